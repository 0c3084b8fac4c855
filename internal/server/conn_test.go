package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openslicer/openslicer/api"
)

// fakeAgent is a guest agent reduced to what the connection tests need:
// health, streaming exec that echoes its stdin, buffered and background
// exec, and a copy that keeps files in memory.
type fakeAgent struct {
	mu    sync.Mutex
	files map[string][]byte
}

func newFakeAgent() *fakeAgent { return &fakeAgent{files: map[string][]byte{}} }

func (a *fakeAgent) handler(*slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/health", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, api.AgentHealthResponse{AgentVersion: "fake"})
	})
	mux.HandleFunc("POST /v1/exec", a.exec)
	mux.HandleFunc("POST /v1/cp", func(w http.ResponseWriter, r *http.Request) {
		data, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		a.mu.Lock()
		a.files[r.URL.Query().Get("path")] = data
		a.mu.Unlock()
		writeJSON(w, http.StatusOK, map[string]int{"bytes": len(data)})
	})
	mux.HandleFunc("GET /v1/cp", func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		data, ok := a.files[r.URL.Query().Get("path")]
		a.mu.Unlock()
		if !ok {
			writeJSON(w, http.StatusNotFound, api.ErrorResponse{Error: "no such file"})
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(data)
	})
	// Agent failures: no answer at all, and an answer cut off mid-body.
	mux.HandleFunc("POST /v1/fs/mkdir", func(w http.ResponseWriter, r *http.Request) {
		panic(http.ErrAbortHandler)
	})
	mux.HandleFunc("GET /v1/fs/readdir", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000")
		w.Write([]byte(`[{"name":"a"`))
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent) // first boot, clock, secrets
	})
	return mux
}

// exec answers the three kinds of exec. A streaming exec of "cat" reads all
// its stdin before it answers; any other command answers at once and
// never reads stdin, like a command that ignores it.
func (a *fakeAgent) exec(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	switch {
	case q.Get("background") == "true":
		writeJSON(w, http.StatusCreated, api.ExecBackgroundResponse{ExecID: "bg-1", PID: 42, StartedAt: time.Now(), RingBytes: 1 << 20})
		return
	case q.Get("buffered") == "true":
		writeJSON(w, http.StatusOK, api.ExecResult{Stdout: "buffered\n"})
		return
	}
	if q.Get("cmd") == "broken" { // the stream breaks after the first frame
		w.Header().Set("Content-Type", "application/x-ndjson")
		json.NewEncoder(w).Encode(api.ExecFrame{Type: api.FrameStarted, Pid: 7})
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}
	var stdin []byte
	if q.Get("cmd") == "cat" {
		var err error
		if stdin, err = io.ReadAll(r.Body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)
	enc.Encode(api.ExecFrame{Type: api.FrameStarted, Pid: 7})
	if len(stdin) > 0 {
		enc.Encode(api.ExecFrame{Type: api.FrameStdout, Data: string(stdin)})
	}
	enc.Encode(api.ExecFrame{Type: api.FrameExit})
}

// sharedClient is one client for many calls with keep-alive on, as Slicer's
// Go SDK uses http.DefaultClient; reused counts the calls that went out on
// a connection an earlier call had used.
type sharedClient struct {
	t      *testing.T
	e      *guestEnv
	http   *http.Client
	reused int
}

func (c *sharedClient) do(method, path string, body io.Reader) (*http.Response, []byte) {
	c.t.Helper()
	req, err := http.NewRequest(method, c.e.ts.URL+path, body)
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+c.e.token)
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) {
			if info.Reused {
				c.reused++
			}
		},
	}))
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("%s %s: read the answer: %v", method, path, err)
	}
	return resp, data
}

// want checks a response's status and that its body contains what it must.
func (c *sharedClient) want(resp *http.Response, body []byte, status int, contains string) {
	c.t.Helper()
	if resp.StatusCode != status || !bytes.Contains(body, []byte(contains)) {
		c.t.Errorf("%s %s = %d %q; want %d containing %q", resp.Request.Method, resp.Request.URL.Path, resp.StatusCode, body, status, contains)
	}
}

// TestStdinExecKeepsConnectionUsable is the connection a Go client reuses
// after an exec with stdin: every later call on it must be answered as if
// it came on a new connection. An exec with stdin used to poison its
// connection, so the next calls arrived cancelled and a copy could answer
// 200 with nothing written.
func TestStdinExecKeepsConnectionUsable(t *testing.T) {
	agent := newFakeAgent()
	e := newGuestEnvWith(t, agent.handler)
	c := &sharedClient{t: t, e: e, http: &http.Client{Transport: &http.Transport{}}}
	defer c.http.CloseIdleConnections()
	vm := "/vm/" + e.vmName
	const rounds = 50
	for i := range rounds {
		stdin := fmt.Sprintf("stdin of round %d", i)
		resp, body := c.do("POST", vm+"/exec?cmd=cat&stdin=true", strings.NewReader(stdin))
		c.want(resp, body, http.StatusOK, `"type":"exit"`)
		if got := stdoutOf(t, body); got != stdin {
			t.Errorf("round %d: exec echoed %q, want %q", i, got, stdin)
		}

		file := fmt.Sprintf("/tmp/round-%d", i)
		content := strings.Repeat(fmt.Sprintf("content %d\n", i), 100)
		resp, body = c.do("POST", vm+"/cp?path="+file, strings.NewReader(content))
		c.want(resp, body, http.StatusOK, `"bytes":`)
		resp, body = c.do("GET", vm+"/cp?path="+file, nil)
		c.want(resp, body, http.StatusOK, "")
		if string(body) != content {
			t.Errorf("round %d: downloaded %d bytes, want the %d uploaded", i, len(body), len(content))
		}

		resp, body = c.do("POST", vm+"/exec?cmd=echo&buffered=true", nil)
		c.want(resp, body, http.StatusOK, `"stdout":"buffered\n"`)
		resp, body = c.do("POST", vm+"/exec?cmd=sleep&background=true", nil)
		c.want(resp, body, http.StatusCreated, `"exec_id":"bg-1"`)
		resp, body = c.do("GET", vm+"/health", nil)
		c.want(resp, body, http.StatusOK, `"agent_version":"fake"`)
		if t.Failed() {
			t.Fatalf("round %d of %d failed", i+1, rounds)
		}
	}
	// The fake agent reads all of stdin before it answers, so every stdin
	// exec has its whole body before the answer starts and its connection
	// stays open: all calls but the first go out on one connection.
	if want := rounds*6 - 1; c.reused != want {
		t.Errorf("%d of %d calls reused a connection, want %d", c.reused, rounds*6, want)
	}
}

// TestStdinExecCutsStdinTheCommandDoesNotRead is an exec whose command
// ends while its caller is still sending stdin: the answer is complete,
// the connection is closed rather than reused (its request body is
// unfinished), and the caller's next calls work.
func TestStdinExecCutsStdinTheCommandDoesNotRead(t *testing.T) {
	agent := newFakeAgent()
	e := newGuestEnvWith(t, agent.handler)
	c := &sharedClient{t: t, e: e, http: &http.Client{Transport: &http.Transport{}}}
	defer c.http.CloseIdleConnections()
	vm := "/vm/" + e.vmName

	pr, pw := io.Pipe()
	defer pw.Close()
	go pw.Write([]byte("some stdin, and more to come"))
	resp, body := c.do("POST", vm+"/exec?cmd=true&stdin=true", pr)
	c.want(resp, body, http.StatusOK, `"type":"exit"`)
	if !resp.Close {
		t.Errorf("exec with unfinished stdin: connection kept open (Connection: %q), want it closed", resp.Header.Get("Connection"))
	}
	resp, body = c.do("GET", vm+"/health", nil)
	c.want(resp, body, http.StatusOK, `"agent_version":"fake"`)
	resp, body = c.do("POST", vm+"/exec?cmd=sleep&background=true", nil)
	c.want(resp, body, http.StatusCreated, `"exec_id":"bg-1"`)
}

// stdoutOf returns the stdout data of an NDJSON exec answer.
func stdoutOf(t *testing.T, body []byte) string {
	t.Helper()
	var out strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		var f api.ExecFrame
		if err := json.Unmarshal(sc.Bytes(), &f); err != nil {
			t.Fatalf("frame %q: %v", sc.Text(), err)
		}
		if f.Type == api.FrameStdout {
			out.WriteString(f.Data)
		}
	}
	return out.String()
}

// TestFailedPassThroughIsNeverSuccess is an agent that fails a guest
// operation: before answering, the caller gets an error status, never a
// 2xx; after answering, the caller's read of the body fails, so a cut
// answer never looks complete.
func TestFailedPassThroughIsNeverSuccess(t *testing.T) {
	e := newGuestEnvWith(t, newFakeAgent().handler)
	vm := e.ts.URL + "/vm/" + e.vmName
	for _, tc := range []struct {
		method, path string
		status       int // 0: the answer starts 200, then breaks
	}{
		{"POST", "/fs/mkdir", http.StatusServiceUnavailable},
		{"GET", "/fs/readdir?path=/", 0},
		{"POST", "/exec?cmd=broken", 0},
		{"POST", "/exec?cmd=broken&stdin=true", 0},
	} {
		req, _ := http.NewRequest(tc.method, vm+tc.path, strings.NewReader(`{"path":"/x"}`))
		req.Header.Set("Authorization", "Bearer "+e.token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", tc.method, tc.path, err)
		}
		body, readErr := io.ReadAll(resp.Body)
		resp.Body.Close()
		if tc.status != 0 {
			var er api.ErrorResponse
			if resp.StatusCode != tc.status || json.Unmarshal(body, &er) != nil || !strings.Contains(er.Error, "agent did not answer") {
				t.Errorf("%s %s = %d %q; want %d with a JSON error naming the agent", tc.method, tc.path, resp.StatusCode, body, tc.status)
			}
			continue
		}
		if readErr == nil {
			t.Errorf("%s %s = %d %q read to a clean end; want the cut answer to fail the read", tc.method, tc.path, resp.StatusCode, body)
		}
	}
}

// TestNoImplicitSuccess: a handler that writes nothing, and an error on a
// cancelled request, are both answered with an error status.
func TestNoImplicitSuccess(t *testing.T) {
	s := New(Options{Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	silent := s.logRequests(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	rec := httptest.NewRecorder()
	silent.ServeHTTP(rec, httptest.NewRequest("POST", "/vm/a/cp", nil))
	if rec.Code != http.StatusInternalServerError || !strings.Contains(rec.Body.String(), "wrote no answer") {
		t.Errorf("silent handler answered %d %q; want 500 naming the problem", rec.Code, rec.Body.String())
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rec = httptest.NewRecorder()
	s.writeError(rec, httptest.NewRequest("POST", "/vm/a/cp", nil).WithContext(ctx), fmt.Errorf("agent: %w", context.Canceled))
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "cancelled") {
		t.Errorf("cancelled request answered %d %q; want 503", rec.Code, rec.Body.String())
	}
}
