package server

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/config"
	"github.com/openslicer/openslicer/internal/hypervisor/hypervisortest"
	"github.com/openslicer/openslicer/internal/secrets"
	"github.com/openslicer/openslicer/internal/store"
	"github.com/openslicer/openslicer/internal/vm"
)

// FuzzServerRoutes sends arbitrary requests (method, target, headers, body)
// as raw HTTP/1.1 over a real connection to the daemon's API, served over
// a Manager with the fake backend, one running VM (sbox-1) whose agent is
// a canned fake (fuzzAgent: it never runs anything), and a secret store.
// The bearer token is added unless the request brings its own
// Authorization. Whatever the request:
//   - the daemon does not panic or hang up without an answer (net/http
//     would log the panic and cut the connection);
//   - what the request got wrong is a 4xx, never a 5xx. 501 (a documented
//     feature not built yet) is the only 5xx allowed;
//   - an error answer is an api.ErrorResponse with a message.
func FuzzServerRoutes(f *testing.F) {
	for _, s := range fuzzServerSeeds() {
		f.Add(s.method, s.target, s.header, []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, method, target, header string, body []byte) {
		env := newFuzzServer(t)
		raw := rawRequest(method, target, header, body, env.token)
		status, ctype, answer, ok := env.roundTrip(t, raw)
		t.Logf("%q: %d %s %s", raw, status, ctype, answer)
		switch {
		case !ok:
			return // the exchange outlived its time: a wait, a watch, a stream
		case status == 0:
			t.Fatalf("the daemon hung up without an answer to %q", raw)
		case status >= 500 && status != http.StatusNotImplemented:
			t.Fatalf("status %d for %q: %s", status, raw, answer)
		case status >= 400 && method != http.MethodHead && !fromNetHTTP(status, ctype, answer):
			var e api.ErrorResponse
			if err := json.Unmarshal([]byte(answer), &e); err != nil || e.Error == "" {
				t.Fatalf("status %d for %q with a body that is not an api.ErrorResponse: %q", status, raw, answer)
			}
		}
	})
}

// fuzzServer is the API over a Manager with the fake backend and one VM.
type fuzzServer struct {
	ts    *httptest.Server
	token string
}

func newFuzzServer(t *testing.T) *fuzzServer {
	t.Helper()
	const token = "secret"
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	sec, err := secrets.Open(filepath.Join(dir, "secrets"))
	if err != nil {
		t.Fatal(err)
	}
	no := false
	cfg := &config.Config{HostGroups: []config.HostGroup{{Name: "sbox", VCPU: 2, RamGB: 1}}, Image: "min", GracefulShutdown: &no}
	config.ApplyDefaults(cfg, "qemu")
	log := slog.New(slog.DiscardHandler)
	var agents sync.WaitGroup
	fake := &hypervisortest.Fake{}
	fake.Agent = func(conn net.Conn) {
		agents.Add(1)
		defer agents.Done()
		serveFuzzAgent(conn, func() {
			for _, m := range fake.Running() {
				m.Exit()
			}
		})
	}
	m := vm.New(vm.Options{
		Config: cfg, Backend: fake, Store: st, Images: images{}, Clone: clone,
		DisksDir: dir, RunDir: filepath.Join(dir, "run"), LogDir: filepath.Join(dir, "logs"), Log: log,
	})
	ts := httptest.NewServer(New(Options{Manager: m, Log: log, Token: token, Info: api.Info{Version: "fuzz"}, Secrets: sec}).Handler())
	t.Cleanup(func() {
		ts.CloseClientConnections()
		m.Close(context.Background(), vm.StopShutDown) // first: a request may wait for a VM to stop
		ts.Close()
		st.Close()
		agents.Wait()
	})
	if _, err := m.Create(context.Background(), "sbox", api.CreateNodeRequest{}, vm.CreateOptions{Wait: vm.WaitAgent, Timeout: time.Minute}); err != nil {
		t.Fatalf("create a vm: %v", err)
	}
	return &fuzzServer{ts: ts, token: token}
}

// fromNetHTTP reports whether an error answer is net/http's own: a request
// it could not parse or whose transfer encoding it does not know, or the
// ServeMux refusing a method. Those are plain text (or nothing); the
// daemon's own errors are all JSON (writeError), and it writes plain text
// only for successes (writeText).
func fromNetHTTP(status int, ctype, body string) bool {
	return strings.HasPrefix(ctype, "text/plain") || ctype == "" && body == ""
}

// roundTrip writes raw to the server and reads the status line, the
// Content-Type and the start of the body. ok is false when the answer did
// not end in time, which streaming answers, and requests whose body is
// shorter than they declare, are allowed. The sending half stays open: a
// half-close reads to net/http as the caller going away, which cancels
// the request.
func (s *fuzzServer) roundTrip(t *testing.T, raw []byte) (status int, ctype, body string, ok bool) {
	t.Helper()
	conn, err := net.Dial("tcp", s.ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write(raw); err != nil {
		return 0, "", "", false
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		if ne, isNet := err.(net.Error); isNet && ne.Timeout() {
			return 0, "", "", false
		}
		return 0, "", "", true // no answer at all
	}
	defer resp.Body.Close()
	ctype = resp.Header.Get("Content-Type")
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if ne, isNet := err.(net.Error); isNet && ne.Timeout() {
		return resp.StatusCode, ctype, string(b), resp.StatusCode < 500 // a stream that had started well
	}
	return resp.StatusCode, ctype, string(b), true
}

// rawRequest writes an HTTP/1.1 request: the header lines as given
// (newline separated), Host, the bearer token unless Authorization is
// among them, and a Content-Length for the body unless they set one.
func rawRequest(method, target, header string, body []byte, token string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: slicer\r\nConnection: close\r\n", method, target)
	lower := strings.ToLower(header)
	for _, l := range strings.Split(header, "\n") {
		if l = strings.TrimRight(l, "\r"); l != "" {
			b.WriteString(l + "\r\n")
		}
	}
	if !strings.Contains(lower, "authorization:") {
		b.WriteString("Authorization: Bearer " + token + "\r\n")
	}
	if !strings.Contains(lower, "content-length:") && !strings.Contains(lower, "transfer-encoding:") {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	}
	b.WriteString("\r\n")
	return append([]byte(b.String()), body...)
}

// serveFuzzAgent answers the daemon's agent streams with canned answers:
// a healthy agent that has run its userdata, first boot, clock and
// secrets accepted, exec that starts and exits 0 without running
// anything (reboot and poweroff call power, which stops the machines as
// the guest's init would), no shell or forward, and for every other guest
// operation an echo of what it was asked.
func serveFuzzAgent(conn net.Conn, power func()) {
	cfg := yamux.DefaultConfig()
	cfg.LogOutput = io.Discard
	sess, err := yamux.Server(conn, cfg)
	if err != nil {
		conn.Close()
		return
	}
	defer sess.Close()
	_ = (&http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fuzzAgentAnswer(w, r, power)
	})}).Serve(sess)
}

func fuzzAgentAnswer(w http.ResponseWriter, r *http.Request, power func()) {
	_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 16<<20))
	q := r.URL.Query()
	if r.URL.Path == "/v1/exec" && (q.Get("cmd") == "reboot" || q.Get("cmd") == "poweroff") {
		defer power()
	}
	switch {
	case r.URL.Path == "/v1/health":
		writeJSON(w, http.StatusOK, api.AgentHealthResponse{Hostname: "fake", UserdataRan: true})
	case r.Method == http.MethodPut:
		w.WriteHeader(http.StatusNoContent)
	case r.URL.Path == "/v1/stats":
		writeJSON(w, http.StatusOK, api.Snapshot{Hostname: "fake"})
	case r.URL.Path == "/v1/exec" && r.Method == http.MethodPost && q.Get("background") == "true":
		writeJSON(w, http.StatusCreated, api.ExecBackgroundResponse{ExecID: "ex_1", PID: 2})
	case r.URL.Path == "/v1/exec" && r.Method == http.MethodPost && q.Get("buffered") == "true":
		writeJSON(w, http.StatusOK, api.ExecResult{Pid: 2})
	case r.URL.Path == "/v1/exec" && r.Method == http.MethodPost:
		w.Header().Set("Content-Type", "application/x-ndjson")
		enc := json.NewEncoder(w)
		_ = enc.Encode(api.ExecFrame{Type: api.FrameStarted, Pid: 2})
		_ = enc.Encode(api.ExecFrame{Type: api.FrameExit})
	case r.URL.Path == "/v1/shell" || r.URL.Path == "/v1/forward":
		writeJSON(w, http.StatusBadRequest, api.ErrorResponse{Error: "the fake agent runs no shell or forward"})
	default:
		writeJSON(w, http.StatusOK, map[string]string{"method": r.Method, "path": r.URL.Path, "query": r.URL.RawQuery})
	}
}

type fuzzServerSeed struct{ method, target, header, body string }

// fuzzServerSeeds cover every route with a valid request and the hostile
// ones issue 9 lists: unknown routes and methods, paths read as
// hostnames, encoded query separators, NUL bytes, huge and broken bodies,
// bad tokens.
func fuzzServerSeeds() []fuzzServerSeed {
	const ws = "Connection: Upgrade\nUpgrade: websocket\nSec-WebSocket-Version: 13\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="
	return []fuzzServerSeed{
		{"GET", "/healthz", "", ""},
		{"HEAD", "/healthz", "", ""},
		{"GET", "/info", "Authorization: Bearer wrong", ""},
		{"GET", "/info", "Authorization: bearer secret", ""},
		{"GET", "/info", "Authorization: Basic c2VjcmV0", ""},
		{"POST", "/daemon/shutdown", "", ""},
		{"GET", "/metrics", "", ""},
		{"GET", "/hostgroup", "", ""},
		{"GET", "/hostgroup/sbox/nodes?tag=a&tag_prefix=b", "", ""},
		{"GET", "/hostgroup/sbox/nodes%3Ftag=user%3Dalice", "", ""},
		{"POST", "/hostgroup/sbox/nodes?wait=none", "", `{"tags":["name=web"]}`},
		{"POST", "/hostgroup/sbox/nodes?wait=agent&timeout=1s", "", `{}`},
		{"POST", "/hostgroup/sbox/nodes?wait=sometime&timeout=soon", "", `{"bogus":1}`},
		{"POST", "/hostgroup/sbox/nodes", "", `{"cpus":9,"ram_bytes":-1,"import_user":"octocat"}`},
		{"POST", "/hostgroup/sbox/nodes", "", strings.Repeat("[", 100000)},
		{"POST", "/hostgroup/sbox/nodes", "Content-Length: 99999999", `{}`},
		{"POST", "/hostgroup/sbox/nodes", "Transfer-Encoding: chunked", "5\r\n{}\r\n"},
		{"POST", "/hostgroup/%B0/nodes", "", "{}"},
		{"POST", "/hostgroup/" + strings.Repeat("g", 5000) + "/nodes", "", "{}"},
		{"DELETE", "/hostgroup/sbox/nodes/sbox-1", "", ""},
		{"DELETE", "/hostgroup/other/nodes/sbox-1", "", ""},
		{"GET", "/nodes", "", ""},
		{"GET", "/nodes/stats", "", ""},
		{"GET", "/node/sbox-1/stats", "", ""},
		{"GET", "/vm/sbox-1", "", ""},
		{"GET", "/vm/commits", "", ""},
		{"POST", "/vm/sbox-1/commit", "", ""},
		{"GET", "/proxy/v1/sbox-1/", "", ""},
		{"GET", "/vm/sbox-1/tags", "", ""},
		{"PATCH", "/vm/sbox-1/tags", "", `{"add":["a","name=web"],"remove":["b"]}`},
		{"PATCH", "/vm/sbox-1/tags", "", `{"replace":["x"],"add":["y"]}`},
		{"PATCH", "/vm/sbox-1/tags", "", `{"add":["` + strings.Repeat("t", 5000) + `"]}`},
		{"POST", "/vm/sbox-1/pause", "", ""},
		{"POST", "/vm/sbox-1/resume", "", ""},
		{"POST", "/vm/sbox-1/shutdown?action=halt", "", ""},
		{"POST", "/vm/sbox-1/shutdown", "", `{"action":"reboot"}`},
		{"POST", "/vm/sbox-1/relaunch", "", ""},
		{"POST", "/vm/sbox-1/suspend", "", ""},
		{"POST", "/vm/sbox-1/restore", "", ""},
		{"POST", "/vm/sbox-1/exec?cmd=true", "", ""},
		{"POST", "/vm/sbox-1/exec?cmd=cat&stdin=true", "", "input"},
		{"POST", "/vm/sbox-1/exec?cmd=ls&buffered=true&uid=0", "", ""},
		{"POST", "/vm/sbox-1/exec?cmd=sleep&background=true&ring_bytes=1024", "", ""},
		{"POST", "/vm/sbox-1/exec?cmd=true&uid=-1&stdio=hex", "", ""},
		{"POST", "/vm/sbox-1/exec", "", ""},
		{"POST", "/vm/sbox-9/exec?cmd=true", "", ""},
		{"GET", "/vm/sbox-1/health", "", ""},
		{"HEAD", "/vm/sbox-1/health", "", ""},
		{"GET", "/vm/sbox-1/logs?lines=x", "", ""},
		{"GET", "/vm/sbox-1/logs?lines=-5", "", ""},
		{"GET", "/vm/sbox-1/exec", "", ""},
		{"GET", "/vm/sbox-1/exec/ex_1/logs?follow=false", "", ""},
		{"POST", "/vm/sbox-1/exec/ex_1/kill", "", `{"signal":"KILL"}`},
		{"GET", "/vm/sbox-1/exec/..%2F..%2Fhealth/wait-exit", "", ""},
		{"GET", "/vm/sbox-1/cp?path=%2Fetc%2Fpasswd", "", ""},
		{"POST", "/vm/sbox-1/cp?path=%2Ftmp%2Fx%00y&mode=cp-v1-tar", "X-Slicer-Unpacked-Size: 99999999999999999", "tar"},
		{"POST", "/vm/sbox-1/cp?path=..%2F..%2Fetc", "Content-Length: 5", "ab"},
		{"GET", "/vm/sbox-1/fs/readdir?path=~", "", ""},
		{"POST", "/vm/sbox-1/fs/mkdir", "", `{"path":"/tmp/a"}`},
		{"DELETE", "/vm/sbox-1/fs/remove?path=%2F", "", ""},
		{"GET", "/vm/sbox-1/fs/watch?paths=%2Ftmp", "Accept: text/event-stream", ""},
		{"GET", "/vm/sbox-1/shell", ws, ""},
		{"GET", "/vm/sbox-1/shell", "", ""},
		{"GET", "/vm/sbox-1/forward", ws + "\nX-Inlets-Upstream: 127.0.0.1:22", ""},
		{"CONNECT", "/vm/sbox-1/forward", "", ""},
		{"GET", "/secrets", "", ""},
		{"POST", "/secrets", "", `{"name":"db","data":"c2VjcmV0","permissions":"0640"}`},
		{"POST", "/secrets", "", `{"name":"../x","data":"eA=="}`},
		{"PATCH", "/secrets/db", "", `{"data":"not base64!"}`},
		{"DELETE", "/secrets/%2E%2E", "", ""},
		{"PUT", "/nodes", "", ""},
		{"BREW", "/info", "", ""},
		{"GET", "/no/such/route", "", ""},
		{"GET", "//vm/../info", "", ""},
		{"GET", "/vm/sbox-1%00/tags", "", ""},
		{"GET", "*", "", ""},
	}
}
