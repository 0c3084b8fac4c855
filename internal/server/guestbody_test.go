package server

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/config"
	"github.com/openslicer/openslicer/internal/guest"
	"github.com/openslicer/openslicer/internal/hypervisor/hypervisortest"
	"github.com/openslicer/openslicer/internal/store"
	"github.com/openslicer/openslicer/internal/vm"
)

// newPassThroughEnv serves the API over a Manager with one fake VM whose
// agent copy route is answered by cp (health by the real agent, other
// routes with 204), and returns the server and the VM.
func newPassThroughEnv(t *testing.T, cp http.Handler) (*httptest.Server, string) {
	t.Helper()
	real := guest.NewServer(slog.New(slog.NewTextHandler(io.Discard, nil))).Handler()
	guest := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/health":
			real.ServeHTTP(w, r)
		case "/v1/cp":
			cp.ServeHTTP(w, r)
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	})
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	no := false
	cfg := &config.Config{HostGroups: []config.HostGroup{{Name: "sbox", VCPU: 2, RamGB: 1}}, Image: "min", GracefulShutdown: &no}
	config.ApplyDefaults(cfg, "qemu")
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var agents sync.WaitGroup
	t.Cleanup(agents.Wait)
	fake := &hypervisortest.Fake{Agent: func(conn net.Conn) {
		agents.Add(1)
		defer agents.Done()
		cfg := yamux.DefaultConfig()
		cfg.LogOutput = io.Discard
		sess, err := yamux.Server(conn, cfg)
		if err != nil {
			conn.Close()
			return
		}
		defer sess.Close()
		_ = (&http.Server{Handler: guest}).Serve(sess)
	}}
	m := vm.New(vm.Options{
		Config: cfg, Backend: fake, Store: st, Images: images{}, Clone: clone,
		DisksDir: dir, RunDir: filepath.Join(dir, "run"), LogDir: filepath.Join(dir, "logs"), Log: log,
	})
	ts := httptest.NewServer(New(Options{Manager: m, Log: log, Token: "secret"}).Handler())
	t.Cleanup(func() {
		ts.Close()
		m.Close(context.Background(), vm.StopShutDown)
		st.Close()
	})
	res, err := m.Create(context.Background(), "sbox", api.CreateNodeRequest{}, vm.CreateOptions{Wait: vm.WaitAgent, Timeout: hangGuard})
	if err != nil {
		t.Fatalf("create a vm: %v", err)
	}
	return ts, res.Hostname
}

// stalledUpload sends an upload's headers declaring length bytes, then
// the first sent bytes of its body, then nothing more, and returns the
// answer's status line and headers. The connection's deadline is a hang
// guard, not a timing assertion: without the fix the answer never comes
// while the client waits.
func stalledUpload(t *testing.T, ts *httptest.Server, target string, length int64, sent int) (*bufio.Reader, *http.Response) {
	t.Helper()
	conn, err := net.Dial("tcp", ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(hangGuard))
	head := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: slicer\r\nAuthorization: Bearer secret\r\n"+
		"Content-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n", target, length)
	if _, err := io.WriteString(conn, head+strings.Repeat("x", sent)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no answer while the client waits, after %d of %d bytes sent: %v", sent, length, err)
	}
	return br, resp
}

// checkClosedAfter reads the answer's body, then expects the server to
// close the connection rather than wait for the rest of the upload.
func checkClosedAfter(t *testing.T, br *bufio.Reader, resp *http.Response) string {
	t.Helper()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read the answer: %v", err)
	}
	if !resp.Close {
		t.Errorf("an answer given before the body was read says Connection: %q, want close", resp.Header.Get("Connection"))
	}
	if n, err := br.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("after the early answer the connection gave %d bytes, %v; want it closed (EOF)", n, err)
	}
	return string(body)
}

// TestGuestEarlyAnswerWhileUploading: the agent refuses an upload (507)
// after reading only its first bytes, while the client has sent those
// and waits. The 507 must reach the client then, with the connection
// closed after it.
func TestGuestEarlyAnswerWhileUploading(t *testing.T) {
	const sent = 64 << 10
	guest := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Read what the client sent, so the pass-through is reading again,
		// waiting for the client, when the answer comes.
		if _, err := io.ReadFull(r.Body, make([]byte, sent)); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusInsufficientStorage)
		io.WriteString(w, `{"error":"insufficient storage: test"}`)
	})
	ts, vmName := newPassThroughEnv(t, guest)
	const declared = int64(1) << 40
	for range earlyRounds {
		br, resp := stalledUpload(t, ts, "/vm/"+vmName+"/cp?path=/tmp/big", declared, sent)
		if resp.StatusCode != http.StatusInsufficientStorage {
			t.Errorf("status = %d, want 507", resp.StatusCode)
		}
		if body := checkClosedAfter(t, br, resp); !strings.Contains(body, "insufficient storage") {
			t.Errorf("body = %q, want the agent's error", body)
		}
	}
}

// earlyRounds is how many uploads each early-answer test sends. Whether
// the answer was held up depended on a race (the pass-through's read of
// the body being under way when the answer came), lost about three times
// in four; several rounds make a regression all but certain to show.
const earlyRounds = 5

// TestGuestEarlyAnswerRealAgent does the same through the real agent's
// copy route: it answers 507 from its statfs check without reading any of
// the body, while the client has sent the headers only.
func TestGuestEarlyAnswerRealAgent(t *testing.T) {
	ts, vmName := newPassThroughEnv(t, guest.NewServer(slog.New(slog.NewTextHandler(io.Discard, nil))).Handler())
	q := url.Values{"path": {filepath.Join(t.TempDir(), "big")}, "uid": {fmt.Sprint(os.Getuid())}, "gid": {fmt.Sprint(os.Getgid())}}
	for range earlyRounds {
		br, resp := stalledUpload(t, ts, "/vm/"+vmName+"/cp?"+q.Encode(), int64(1)<<50, 0)
		if resp.StatusCode != http.StatusInsufficientStorage {
			t.Errorf("status = %d, want 507", resp.StatusCode)
		}
		if body := checkClosedAfter(t, br, resp); !strings.Contains(body, "bytes free") {
			t.Errorf("body = %q, want the agent's statfs error", body)
		}
	}
}

// TestGuestBodyUnread is the decision alone.
func TestGuestBodyUnread(t *testing.T) {
	tests := []struct {
		name   string
		length int64
		read   int64
		eof    bool
		want   bool
	}{
		{"known length, all read", 10, 10, false, false},
		{"known length, part read", 10, 4, false, true},
		{"chunked, not at the end", -1, 100, false, true},
		{"chunked, at the end", -1, 100, true, false},
	}
	for _, tt := range tests {
		b := &guestBody{length: tt.length}
		b.read.Store(tt.read)
		b.eof.Store(tt.eof)
		if got := b.unread(); got != tt.want {
			t.Errorf("%s: unread = %v, want %v", tt.name, got, tt.want)
		}
	}
	var none *guestBody
	if none.unread() {
		t.Errorf("no body is unread")
	}
}

// TestGuestNULPath checks that a NUL byte in a copy's path passes through
// the daemon to the agent, which refuses it with a 400 naming the path
// (it was a 500 from the kernel's EINVAL).
func TestGuestNULPath(t *testing.T) {
	ts, vmName := newPassThroughEnv(t, guest.NewServer(slog.New(slog.NewTextHandler(io.Discard, nil))).Handler())
	q := url.Values{"path": {"/tmp/a\x00b"}, "uid": {fmt.Sprint(os.Getuid())}, "gid": {fmt.Sprint(os.Getgid())}}
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		req, err := http.NewRequest(method, ts.URL+"/vm/"+vmName+"/cp?"+q.Encode(), strings.NewReader("x"))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer secret")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "path") || !strings.Contains(string(body), "NUL") {
			t.Errorf("%s cp with a NUL in path = %d %s, want 400 naming path", method, resp.StatusCode, body)
		}
	}
}
