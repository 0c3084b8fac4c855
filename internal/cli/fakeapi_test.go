package cli

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openslicer/openslicer/api"
)

// fakeAPI is an in-memory daemon: just enough of the REST API for the CLI
// tests, driven through the real client.
type fakeAPI struct {
	mu       sync.Mutex
	groups   []api.HostGroup
	nodes    []api.Node
	requests []string // "METHOD /path?query", in order
	auth     []string // Authorization header of each request
	created  api.CreateNodeRequest
	// Health: the first notUp health requests answer 503 (agent not up),
	// the next userdataPending report userdata_ran false.
	notUp, userdataPending, healthCalls int
}

func newFakeAPI(t *testing.T) (*fakeAPI, *httptest.Server) {
	t.Helper()
	created := time.Date(2026, 2, 27, 16, 30, 53, 0, time.UTC)
	f := &fakeAPI{
		groups: []api.HostGroup{{Name: "task", Count: 2, RamBytes: 2 << 30, CPUs: 1, Arch: "x86_64"}},
		nodes: []api.Node{
			{Hostname: "task-1", HostGroup: "task", IP: "192.168.138.2", RamBytes: 2 << 30, CPUs: 1, CreatedAt: created, Status: api.StatusRunning},
			{Hostname: "task-2", HostGroup: "task", IP: "192.168.138.3", RamBytes: 4 << 30, CPUs: 2, CreatedAt: created.Add(time.Minute), Status: api.StatusPaused, State: api.StateSuspended, Tags: []string{"name=web", "role=api"}},
		},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /info", func(w http.ResponseWriter, r *http.Request) {
		writeTestJSON(w, 200, api.Info{Version: "0.9.0", GitCommit: "abc123", Platform: "linux", Arch: "amd64", Accelerator: "tcg", AcceleratorReason: "this host has no /dev/kvm"})
	})
	mux.HandleFunc("GET /hostgroup", func(w http.ResponseWriter, r *http.Request) { writeTestJSON(w, 200, f.groups) })
	mux.HandleFunc("GET /nodes", func(w http.ResponseWriter, r *http.Request) {
		writeTestJSON(w, 200, f.filter("", r.URL.Query().Get("tag")))
	})
	mux.HandleFunc("GET /hostgroup/{g}/nodes", func(w http.ResponseWriter, r *http.Request) {
		writeTestJSON(w, 200, f.filter(r.PathValue("g"), r.URL.Query().Get("tag")))
	})
	mux.HandleFunc("POST /hostgroup/{g}/nodes", f.create)
	mux.HandleFunc("DELETE /hostgroup/{g}/nodes/{h}", func(w http.ResponseWriter, r *http.Request) {
		if f.node(r.PathValue("h")) == nil {
			writeTestJSON(w, 404, api.ErrorResponse{Error: "vm not found"})
			return
		}
		writeTestJSON(w, 200, api.DeleteResponse{Message: "VM deleted", DiskRemoved: "true"})
	})
	mux.HandleFunc("GET /vm/{h}/logs", func(w http.ResponseWriter, r *http.Request) {
		if f.node(r.PathValue("h")) == nil {
			writeTestJSON(w, 404, api.ErrorResponse{Error: "vm not found"})
			return
		}
		writeTestJSON(w, 200, api.LogsResponse{Hostname: r.PathValue("h"), Lines: 2, Content: "boot\nready"})
	})
	mux.HandleFunc("GET /vm/{h}/health", func(w http.ResponseWriter, r *http.Request) {
		if f.node(r.PathValue("h")) == nil {
			writeTestJSON(w, 404, api.ErrorResponse{Error: "vm not found"})
			return
		}
		f.mu.Lock()
		n := f.healthCalls
		f.healthCalls++
		f.mu.Unlock()
		if n < f.notUp {
			writeTestJSON(w, 503, api.ErrorResponse{Error: "agent not ready"})
			return
		}
		ran := n >= f.notUp+f.userdataPending
		var code *int
		if ran {
			code = new(0)
		}
		writeTestJSON(w, 200, api.AgentHealthResponse{Hostname: r.PathValue("h"), AgentVersion: "0.9.0",
			AgentUptime: 90*time.Second + 300*time.Millisecond, SystemUptime: time.Hour, UserdataRan: ran, UserdataExitCode: code, IP: "192.168.138.2"})
	})
	mux.HandleFunc("POST /vm/{h}/pause", func(w http.ResponseWriter, r *http.Request) {
		if f.node(r.PathValue("h")) == nil {
			writeTestJSON(w, 404, api.ErrorResponse{Error: "vm not found"})
			return
		}
		_, _ = io.WriteString(w, "OK")
	})
	mux.HandleFunc("POST /vm/{h}/exec", f.exec)
	mux.HandleFunc("POST /daemon/shutdown", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusAccepted)
		_, _ = io.WriteString(w, "shutting down")
	})

	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		req := r.Method + " " + r.URL.EscapedPath()
		if r.URL.RawQuery != "" {
			req += "?" + r.URL.RawQuery
		}
		f.requests = append(f.requests, req)
		f.auth = append(f.auth, r.Header.Get("Authorization"))
		f.mu.Unlock()
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return f, srv
}

func writeTestJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (f *fakeAPI) node(host string) *api.Node {
	for i := range f.nodes {
		if f.nodes[i].Hostname == host {
			return &f.nodes[i]
		}
	}
	return nil
}

func (f *fakeAPI) filter(group, tag string) []api.Node {
	out := []api.Node{}
	for _, n := range f.nodes {
		if (group == "" || n.HostGroup == group) && (tag == "" || slices.Contains(n.Tags, tag)) {
			out = append(out, n)
		}
	}
	return out
}

func (f *fakeAPI) create(w http.ResponseWriter, r *http.Request) {
	if err := json.NewDecoder(r.Body).Decode(&f.created); err != nil {
		writeTestJSON(w, 400, api.ErrorResponse{Error: err.Error()})
		return
	}
	g := r.PathValue("g")
	writeTestJSON(w, 201, api.CreateNodeResponse{
		Hostname: g + "-3", HostGroup: g, IP: "192.168.138.4/24",
		CreatedAt:  time.Date(2025, 9, 9, 9, 45, 27, 0, time.FixedZone("", 3600)),
		Persistent: f.created.Persistent,
	})
}

// exec plays a few commands: "echo" prints its args, "fail N" prints to
// stderr and exits N, "cat" echoes stdin while reading it, "missing" cannot
// start.
func (f *fakeAPI) exec(w http.ResponseWriter, r *http.Request) {
	if f.node(r.PathValue("h")) == nil {
		writeTestJSON(w, 404, api.ErrorResponse{Error: "vm not found"})
		return
	}
	req, err := api.ParseExecQuery(r.URL.Query())
	if err != nil {
		writeTestJSON(w, 400, api.ErrorResponse{Error: err.Error()})
		return
	}
	rc := http.NewResponseController(w)
	if req.Stdin {
		_ = rc.EnableFullDuplex()
	}
	enc := json.NewEncoder(w)
	emit := func(fr api.ExecFrame) {
		_ = enc.Encode(fr)
		_ = rc.Flush()
	}
	out := func(typ, s string) {
		fr := api.ExecFrame{Type: typ}
		if req.Stdio == api.StdioBase64 {
			fr.Encoding, s = api.StdioBase64, base64.StdEncoding.EncodeToString([]byte(s))
		}
		if typ == api.FrameStdout {
			fr.Stdout = s
		} else {
			fr.Stderr = s
		}
		emit(fr)
	}
	if req.Command == "missing" {
		emit(api.ExecFrame{Error: `exec: "missing": executable file not found in $PATH`, ExitCode: 127})
		return
	}
	emit(api.ExecFrame{Type: api.FrameStarted, Pid: 42})
	code := 0
	switch req.Command {
	case "echo":
		out(api.FrameStdout, strings.Join(req.Args, " ")+"\n")
	case "fail":
		out(api.FrameStderr, "boom\n")
		code, _ = strconv.Atoi(req.Args[0])
	case "cat":
		b, _ := io.ReadAll(r.Body)
		out(api.FrameStdout, string(b))
	default:
		out(api.FrameStderr, fmt.Sprintf("unknown test command %q\n", req.Command))
		code = 99
	}
	emit(api.ExecFrame{Type: api.FrameExit, ExitCode: code})
}

func (f *fakeAPI) seen() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.requests)
}
