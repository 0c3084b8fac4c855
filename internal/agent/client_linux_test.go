package agent

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/yamux"
	"golang.org/x/sys/unix"

	"github.com/openslicer/openslicer/api"
)

// The Client's own behaviour (sessions, redials, readiness) against a
// stand-in for the guest that answers health as the guest agent does: a
// yamux server session on the channel, one HTTP request per stream. The
// guest agent's routes are tested in internal/guest, through this Client.

// socketPair returns the two ends of a connected unix socket pair.
func socketPair(t *testing.T) (host, guest net.Conn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conns := make([]net.Conn, 2)
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "socketpair")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c
	}
	return conns[0], conns[1]
}

// harness connects a Client to a stand-in guest: every dial makes a new
// socket pair and hands its guest end to serve (by default serveGuest).
type harness struct {
	t      *testing.T
	log    *slog.Logger
	client *Client
	dials  atomic.Int32
	// releases counts the POST /v1/release the stand-in guest answered.
	releases atomic.Int32
	ctx      context.Context
	wg       sync.WaitGroup

	// serve handles the guest end of dial number n (from 1); nil serves it.
	serve func(n int, guest net.Conn)
}

func newHarness(t *testing.T) *harness {
	log := testLogger(t)
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{t: t, log: log, ctx: ctx}
	h.client = NewClient(h.dial, log)
	t.Cleanup(func() {
		cancel() // first, so that the guest side reads the close as the end
		h.client.Close()
		h.wg.Wait()
	})
	return h
}

func (h *harness) dial(ctx context.Context) (net.Conn, error) {
	n := int(h.dials.Add(1))
	host, guest := socketPair(h.t)
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		if h.serve != nil {
			h.serve(n, guest)
			return
		}
		h.serveGuest(guest)
	}()
	return host, nil
}

// serveGuest answers GET /v1/health on the streams the host opens on
// guest until the host goes away or the test ends.
func (h *harness) serveGuest(guest net.Conn) {
	sess, err := yamux.Server(guest, YamuxConfig(h.log, true))
	if err != nil {
		h.t.Errorf("yamux server: %v", err)
		guest.Close()
		return
	}
	stop := context.AfterFunc(h.ctx, func() { sess.Close() })
	defer stop()
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+PathHealth, func(w http.ResponseWriter, r *http.Request) {
		WriteJSON(w, http.StatusOK, api.AgentHealthResponse{Hostname: "stand-in", AgentVersion: "test"})
	})
	mux.HandleFunc("POST "+PathRelease, func(w http.ResponseWriter, r *http.Request) {
		h.releases.Add(1)
		w.WriteHeader(http.StatusNoContent)
	})
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: time.Minute}
	_ = hs.Serve(sess)
	sess.Close()
	_ = hs.Shutdown(context.WithoutCancel(h.ctx))
}

// testLogger logs to t.Log until the test's cleanups have run, then drops
// what goroutines still log (t.Log would panic then).
func testLogger(t *testing.T) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(w.stop) // registered first, so it runs last
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct {
	mu   sync.Mutex
	t    *testing.T
	done bool
}

func (w *testWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Helper()
		w.t.Log(string(b))
	}
	return len(b), nil
}

func (w *testWriter) stop() {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}

func TestHealthAnswer(t *testing.T) {
	h := newHarness(t)
	got, err := h.client.Health(context.Background())
	if err != nil {
		t.Fatalf("Health: %v", err)
	}
	if got.Hostname != "stand-in" || got.AgentVersion != "test" {
		t.Errorf("Health = %+v, want the stand-in's answer", got)
	}
}

func TestClientReconnects(t *testing.T) {
	h := newHarness(t)
	var guests []net.Conn
	var mu sync.Mutex
	h.serve = func(n int, guest net.Conn) {
		mu.Lock()
		guests = append(guests, guest)
		mu.Unlock()
		h.serveGuest(guest)
	}
	ctx := context.Background()
	if _, err := h.client.Health(ctx); err != nil {
		t.Fatalf("Health: %v", err)
	}
	// The guest side goes away (its agent restarted, or it reopened the
	// port); the host's session sees EOF.
	h.client.mu.Lock()
	closed := h.client.sess.mux.CloseChan()
	h.client.mu.Unlock()
	mu.Lock()
	guests[0].Close()
	mu.Unlock()
	<-closed

	if _, err := h.client.Health(ctx); err != nil {
		t.Fatalf("Health after the guest went away: %v", err)
	}
	if n := h.dials.Load(); n != 2 {
		t.Errorf("dials = %d, want 2 (one redial)", n)
	}
}

func TestWaitReady(t *testing.T) {
	tests := []struct {
		name string
		// serve handles the guest end of dial n; it serves it by default.
		serve   func(h *harness, n int, guest net.Conn) bool
		attempt time.Duration
		dials   int32
	}{
		{
			name:    "agent starts late",
			attempt: time.Minute, // no probe times out: the first one is answered
			serve: func(h *harness, n int, guest net.Conn) bool {
				time.Sleep(300 * time.Millisecond) // the probe waits in the channel meanwhile
				return false
			},
			dials: 1,
		},
		{
			name: "guest closes its first session",
			serve: func(h *harness, n int, guest net.Conn) bool {
				if n == 1 {
					guest.Close()
					return true
				}
				return false
			},
			dials: 2,
		},
		{
			name: "first session stays silent",
			serve: func(h *harness, n int, guest net.Conn) bool {
				if n == 1 {
					<-h.ctx.Done() // never answers; the probe times out
					guest.Close()
					return true
				}
				return false
			},
			dials: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.client.readyAttempt = 200 * time.Millisecond
			if tt.attempt != 0 {
				h.client.readyAttempt = tt.attempt
			}
			h.serve = func(n int, guest net.Conn) {
				if !tt.serve(h, n, guest) {
					h.serveGuest(guest)
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := h.client.WaitReady(ctx); err != nil {
				t.Fatalf("WaitReady: %v", err)
			}
			if n := h.dials.Load(); n != tt.dials {
				t.Errorf("dials = %d, want %d", n, tt.dials)
			}
		})
	}
}

// TestWaitReadySilentSessionInUse: a session whose guest end is gone is
// given up even while a request without a deadline waits on it (as the
// daemon's own deliveries do beside a create's wait): it does not answer a
// ping. The waiting request then fails, and the next session answers.
func TestWaitReadySilentSessionInUse(t *testing.T) {
	h := newHarness(t)
	h.client.readyAttempt, h.client.pingTimeout = 200*time.Millisecond, 200*time.Millisecond
	h.serve = func(n int, guest net.Conn) {
		if n == 1 {
			<-h.ctx.Done() // reads nothing, answers nothing
			guest.Close()
			return
		}
		h.serveGuest(guest)
	}
	stuck := make(chan error, 1)
	go func() { _, err := h.client.Health(context.Background()); stuck <- err }()
	for {
		h.client.mu.Lock()
		inUse := h.client.sess != nil && h.client.sess.active > 0
		h.client.mu.Unlock()
		if inUse {
			break
		}
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := h.client.WaitReady(ctx); err != nil {
		t.Fatalf("WaitReady: %v", err)
	}
	if n := h.dials.Load(); n != 2 {
		t.Errorf("dials = %d, want 2", n)
	}
	select {
	case err := <-stuck:
		if err == nil {
			t.Error("the request left on the silent session was answered")
		}
	case <-ctx.Done():
		t.Error("the request left on the silent session still waits after the session was given up")
	}
}

// TestDetach: a host leaving a running guest releases the agent on its
// live session, then closes; without a session it dials nothing.
func TestDetach(t *testing.T) {
	h := newHarness(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := h.client.Health(ctx); err != nil {
		t.Fatal(err)
	}
	if err := h.client.Detach(ctx); err != nil {
		t.Fatalf("Detach: %v", err)
	}
	if n := h.releases.Load(); n != 1 {
		t.Errorf("releases = %d, want 1", n)
	}
	if _, err := h.client.Health(ctx); err == nil {
		t.Error("the client still answers after Detach")
	}

	idle := newHarness(t)
	if err := idle.client.Detach(ctx); err != nil {
		t.Fatalf("Detach without a session: %v", err)
	}
	if n, r := idle.dials.Load(), idle.releases.Load(); n != 0 || r != 0 {
		t.Errorf("Detach without a session dialled %d times and released %d", n, r)
	}
}

func TestWaitReadyGivesUp(t *testing.T) {
	var dials atomic.Int32
	c := NewClient(func(context.Context) (net.Conn, error) {
		dials.Add(1)
		return nil, errors.New("no socket yet")
	}, testLogger(t))
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := c.WaitReady(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "no socket yet") {
		t.Errorf("WaitReady = %v, want the deadline and the last error", err)
	}
	if n := dials.Load(); n < 2 {
		t.Errorf("dials = %d, want retries", n)
	}
}

func TestClientClosed(t *testing.T) {
	h := newHarness(t)
	h.client.Close()
	if _, err := h.client.Health(context.Background()); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Health after Close = %v, want net.ErrClosed", err)
	}
}
