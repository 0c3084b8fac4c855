package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/client"
	"github.com/openslicer/openslicer/internal/config"
	"github.com/openslicer/openslicer/internal/guest"
	"github.com/openslicer/openslicer/internal/hypervisor/hypervisortest"
	"github.com/openslicer/openslicer/internal/store"
	"github.com/openslicer/openslicer/internal/vm"
)

// hangGuard bounds how long a test waits before failing instead of
// hanging; it is not a timing assertion.
const hangGuard = time.Minute

// guestEnv is the API over a Manager whose fake VMs have a real agent
// running in this process, and one such VM.
type guestEnv struct {
	ts     *httptest.Server
	m      *vm.Manager
	c      *client.Client
	vmName string
	token  string
}

func newGuestEnv(t *testing.T) *guestEnv {
	t.Helper()
	return newGuestEnvWith(t, limitedAgent)
}

// newGuestEnvWith is newGuestEnv with the guest side of every agent
// channel served by the handler agentFor returns.
func newGuestEnvWith(t *testing.T, agentFor func(*slog.Logger) http.Handler) *guestEnv {
	t.Helper()
	const token = "secret"
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
	t.Cleanup(agents.Wait) // runs last: the agents end once the VMs are gone
	fake := &hypervisortest.Fake{Agent: func(conn net.Conn) {
		agents.Add(1)
		defer agents.Done()
		serveAgent(conn, agentFor(log))
	}}
	m := vm.New(vm.Options{
		Config: cfg, Backend: fake, Store: st, Images: images{}, Clone: clone,
		DisksDir: dir, RunDir: filepath.Join(dir, "run"), LogDir: filepath.Join(dir, "logs"), Log: log,
	})
	ts := httptest.NewServer(New(Options{Manager: m, Log: log, Token: token}).Handler())
	t.Cleanup(func() {
		ts.Close()
		m.Close(context.Background(), vm.StopShutDown)
		st.Close()
	})
	res, err := m.Create(context.Background(), "sbox", api.CreateNodeRequest{}, vm.CreateOptions{Wait: vm.WaitAgent, Timeout: hangGuard})
	if err != nil {
		t.Fatalf("create a vm: %v", err)
	}
	return &guestEnv{ts: ts, m: m, c: client.New(ts.URL, token), vmName: res.Hostname, token: token}
}

// limitedAgent is the real agent, limited to the routes that do not
// touch this host's system files: other routes (first boot) answer 204
// without doing anything.
func limitedAgent(log *slog.Logger) http.Handler {
	h := guest.NewServer(log).Handler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/health", "/v1/shell", "/v1/forward":
			h.ServeHTTP(w, r)
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	})
}

// serveAgent serves the guest side of an agent channel with h.
func serveAgent(conn net.Conn, h http.Handler) {
	cfg := yamux.DefaultConfig()
	cfg.LogOutput = io.Discard
	sess, err := yamux.Server(conn, cfg)
	if err != nil {
		conn.Close()
		return
	}
	defer sess.Close()
	_ = (&http.Server{Handler: h}).Serve(sess)
}

// selfShell is a shell as the test's own user, so it runs as root and not.
func selfShell() client.ShellOptions {
	uid, gid := uint32(os.Getuid()), uint32(os.Getgid())
	return client.ShellOptions{UID: &uid, GID: &gid, Shell: "sh"}
}

// readUntil reads shell output until it matches re, and returns the match.
func readUntil(t *testing.T, ctx context.Context, sh *client.ShellConn, out *bytes.Buffer, re *regexp.Regexp) []string {
	t.Helper()
	for {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			return m
		}
		b, err := sh.Read(ctx)
		if err != nil {
			t.Fatalf("waiting for %q: %v; output so far:\n%s", re, err, out.String())
		}
		out.Write(b)
	}
}

// readToClose reads until the session is closed.
func readToClose(t *testing.T, ctx context.Context, sh *client.ShellConn, out *bytes.Buffer) {
	t.Helper()
	for {
		b, err := sh.Read(ctx)
		if errors.Is(err, client.ErrSessionClosed) {
			return
		}
		if err != nil {
			t.Fatalf("read to the end of the session: %v; output:\n%s", err, out.String())
		}
		out.Write(b)
	}
}

func TestShellOverWebSocket(t *testing.T) {
	e := newGuestEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	sh, err := e.c.Shell(ctx, e.vmName, selfShell())
	if err != nil {
		t.Fatalf("Shell: %v", err)
	}
	defer sh.Close()
	var out bytes.Buffer
	if err := sh.Resize(ctx, 101, 31); err != nil {
		t.Fatal(err)
	}
	if err := sh.SendData(ctx, []byte("echo hel''lo-$((6*7)); stty size\n")); err != nil {
		t.Fatal(err)
	}
	readUntil(t, ctx, sh, &out, regexp.MustCompile(`hello-42\r?\n31 101\r?\n`))
	if err := sh.Heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	if err := sh.SendData(ctx, []byte("exit\n")); err != nil {
		t.Fatal(err)
	}
	readToClose(t, ctx, sh, &out)
}

// TestShellShutdownOverWebSocket checks that a client's shutdown reaches
// the guest: the shell is hung up.
func TestShellShutdownOverWebSocket(t *testing.T) {
	e := newGuestEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	sh, err := e.c.Shell(ctx, e.vmName, selfShell())
	if err != nil {
		t.Fatalf("Shell: %v", err)
	}
	defer sh.Close()
	var out bytes.Buffer
	if err := sh.SendData(ctx, []byte("echo pid=$$\n")); err != nil {
		t.Fatal(err)
	}
	m := readUntil(t, ctx, sh, &out, regexp.MustCompile(`pid=(\d+)`))
	if err := sh.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	readToClose(t, ctx, sh, &out)
	pid, _ := strconv.Atoi(m[1])
	for {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
			break // exited and reaped by the agent
		}
		if ctx.Err() != nil {
			t.Fatalf("shell %d still running after a shutdown", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// echoServer serves TCP connections on loopback by echoing them, until
// the test ends, and returns its address.
func echoServer(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

func TestForwardOverWebSocket(t *testing.T) {
	e := newGuestEnv(t)
	upstream := echoServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := e.c.DialForward(ctx, e.vmName, upstream)
			if err != nil {
				t.Errorf("tunnel %d: DialForward: %v", i, err)
				return
			}
			defer conn.Close()
			payload := bytes.Repeat([]byte(fmt.Sprintf("tunnel %d;", i)), 5000+i*100)
			go func() { _, _ = conn.Write(payload) }()
			got := make([]byte, len(payload))
			if _, err := io.ReadFull(conn, got); err != nil || !bytes.Equal(got, payload) {
				t.Errorf("tunnel %d: read back %v; want the %d bytes sent", i, err, len(payload))
			}
		}()
	}
	wg.Wait()
}

// TestForwardListener runs the CLI's path: a local listener whose
// connections are tunnelled to the guest.
func TestForwardListener(t *testing.T) {
	e := newGuestEnv(t)
	upstream := echoServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	ln, err := client.ListenForward(ctx, client.ForwardSpec{Network: "tcp", Address: "127.0.0.1:0", Upstream: upstream})
	if err != nil {
		t.Fatal(err)
	}
	fwdCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- e.c.Forward(fwdCtx, slog.New(slog.NewTextHandler(io.Discard, nil)), e.vmName, ln, upstream)
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.SetDeadline(time.Now().Add(hangGuard))
	if _, err := conn.Write([]byte("ping\n")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 5)
	if _, err := io.ReadFull(conn, got); err != nil || string(got) != "ping\n" {
		t.Errorf("read %q, %v; want \"ping\\n\"", got, err)
	}
	conn.Close()
	stop()
	if err := <-done; err != nil {
		t.Errorf("Forward: %v", err)
	}
}

// TestForwardUpstreamClosesOverWebSocket checks that an upstream that
// closes ends the tunnel: the client reads what it sent, then EOF.
func TestForwardUpstreamClosesOverWebSocket(t *testing.T) {
	e := newGuestEnv(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	served := make(chan struct{})
	go func() {
		defer close(served)
		if c, err := ln.Accept(); err == nil {
			c.Write([]byte("bye\n"))
			c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	conn, err := e.c.DialForward(ctx, e.vmName, ln.Addr().String())
	if err != nil {
		t.Fatalf("DialForward: %v", err)
	}
	defer conn.Close()
	got, err := io.ReadAll(conn)
	if err != nil || string(got) != "bye\n" {
		t.Errorf("read %q, %v; want \"bye\\n\" then EOF", got, err)
	}
	<-served
}

func TestShellAndForwardErrors(t *testing.T) {
	e := newGuestEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := ln.Addr().String()
	ln.Close()
	badShell := selfShell()
	badShell.Shell = "/no/such/shell"

	if _, err := e.c.Shell(ctx, "sbox-99", selfShell()); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("Shell(unknown vm) error = %v, want ErrNotFound", err)
	}
	if _, err := e.c.Shell(ctx, e.vmName, badShell); !errors.Is(err, api.ErrInvalid) {
		t.Errorf("Shell(missing shell) error = %v, want ErrInvalid", err)
	}
	if _, err := e.c.DialForward(ctx, "sbox-99", closedPort); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("DialForward(unknown vm) error = %v, want ErrNotFound", err)
	}
	if _, err := e.c.DialForward(ctx, e.vmName, closedPort); !errors.Is(err, api.ErrUnavailable) {
		t.Errorf("DialForward(closed port) error = %v, want ErrUnavailable", err)
	}
	if _, err := e.c.DialForward(ctx, e.vmName, "no-port"); !errors.Is(err, api.ErrInvalid) {
		t.Errorf("DialForward(bad upstream) error = %v, want ErrInvalid", err)
	}

	for _, tc := range []struct {
		method, path, token string
		status              int
		contains            string
	}{
		{"GET", "/vm/" + e.vmName + "/forward", e.token, 400, api.HeaderInletsUpstream},
		{"GET", "/vm/" + e.vmName + "/shell?uid=x", e.token, 400, "uid"},
		{"GET", "/vm/" + e.vmName + "/shell", "", 401, "bearer"},
	} {
		status, body := do(t, e.ts, tc.method, tc.path, tc.token, "")
		if status != tc.status || !strings.Contains(body, tc.contains) {
			t.Errorf("%s %s = %d %s; want %d containing %q", tc.method, tc.path, status, body, tc.status, tc.contains)
		}
	}

	if err := e.m.Pause(ctx, e.vmName); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.Shell(ctx, e.vmName, selfShell()); !errors.Is(err, api.ErrConflict) {
		t.Errorf("Shell(paused vm) error = %v, want ErrConflict", err)
	}
	if _, err := e.c.DialForward(ctx, e.vmName, closedPort); !errors.Is(err, api.ErrConflict) {
		t.Errorf("DialForward(paused vm) error = %v, want ErrConflict", err)
	}
}
