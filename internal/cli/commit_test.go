package cli

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/openslicer/openslicer/api"
)

// commitAPI is a fake daemon for the commit and fork commands: it records
// each request with its body, and answers from its fields.
type commitAPI struct {
	mu       sync.Mutex
	requests []string // "METHOD /path?query body"
}

func newCommitAPI(t *testing.T) (*commitAPI, *httptest.Server) {
	t.Helper()
	f := &commitAPI{}
	created := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /vm/{h}/commit", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("h") != "sbox-1" {
			writeTestJSON(w, 404, api.ErrorResponse{Error: "vm not found"})
			return
		}
		var req api.CommitVMRequest
		json.NewDecoder(r.Body).Decode(&req)
		writeTestJSON(w, 200, api.CommitVMResponse{Hostname: "sbox-1", CommitID: "cmt-demo", Status: "committed", ParentStatus: "Stopped", Mode: "disk", Tags: req.Tags, CacheKey: req.CacheKey})
	})
	mux.HandleFunc("GET /nodes", func(w http.ResponseWriter, r *http.Request) {
		nodes := []api.Node{}
		if r.URL.Query().Get("tag") == "name=base" {
			nodes = append(nodes, api.Node{Hostname: "sbox-1", HostGroup: "sbox", Tags: []string{"name=base"}})
		}
		writeTestJSON(w, 200, nodes)
	})
	mux.HandleFunc("GET /vm/commits", func(w http.ResponseWriter, r *http.Request) {
		writeTestJSON(w, 200, []api.CommitInfo{{CommitID: "cmt-demo", SourceHostname: "sbox-1", SourceHostGroup: "sbox", CreatedAt: created, Mode: "disk", CacheKey: "k1", Tags: []string{"a", "b"}}})
	})
	mux.HandleFunc("DELETE /vm/commits/{id}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("id") == "cmt-used" {
			writeTestJSON(w, 409, api.ErrorResponse{Error: `commit cmt-used is in use by its source vm "sbox-1"; delete them first: conflict`})
			return
		}
		writeTestJSON(w, 200, api.CommitDeleteResponse{CommitID: r.PathValue("id"), Status: "deleted"})
	})
	mux.HandleFunc("POST /vm/commits/{id}/fork", func(w http.ResponseWriter, r *http.Request) {
		status := "starting"
		if r.URL.Query().Get("wait") == "agent" {
			status = "running"
		}
		writeTestJSON(w, 200, api.ForkVMResponse{Hostname: "sbox-2", SourceHostname: "sbox-1", CommitID: r.PathValue("id"), Status: "forked", ChildStatus: status, Mode: "disk"})
	})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(strings.NewReader(string(body)))
		req := r.Method + " " + r.URL.EscapedPath()
		if r.URL.RawQuery != "" {
			req += "?" + r.URL.RawQuery
		}
		if len(body) > 0 {
			req += " " + strings.TrimSpace(string(body))
		}
		f.mu.Lock()
		f.requests = append(f.requests, req)
		f.mu.Unlock()
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return f, srv
}

func (f *commitAPI) take() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.requests
	f.requests = nil
	return out
}

// Each commit and fork command sends the request the API documents and
// prints its answer, as a table, a line or JSON.
func TestCommitCommands(t *testing.T) {
	f, srv := newCommitAPI(t)
	for _, tc := range []struct {
		args     []string
		requests []string
		out      string // the whole output, or with json a field it must hold
		json     bool
	}{
		{
			args:     []string{"vm", "commit", "sbox-1", "--cache-key", "k1", "--tag", "a"},
			requests: []string{`POST /vm/sbox-1/commit {"tags":["a"],"cache_key":"k1"}`},
			out:      "Committed sbox-1 as cmt-demo (cache key k1)\n",
		},
		{
			args:     []string{"vm", "commit", "base", "--json"},
			requests: []string{"POST /vm/base/commit", "GET /nodes?tag=name%3Dbase", "POST /vm/sbox-1/commit"},
			out:      `"commit_id": "cmt-demo"`, json: true,
		},
		{
			args:     []string{"vm", "commit", "list", "--cache-key", "k1"},
			requests: []string{"GET /vm/commits?cache_key=k1"},
			out: "COMMIT    SOURCE  GROUP  MODE  CREATED              CACHE KEY  TAGS\n" +
				"------    ------  -----  ----  -------              ---------  ----\n" +
				"cmt-demo  sbox-1  sbox   disk  2026-12-01 10:00:00  k1         a,b\n",
		},
		{
			args:     []string{"vm", "commit", "list", "--json"},
			requests: []string{"GET /vm/commits"},
			out:      `"source_host_group": "sbox"`, json: true,
		},
		{
			args:     []string{"vm", "commit", "delete", "cmt-demo"},
			requests: []string{"DELETE /vm/commits/cmt-demo"},
			out:      "Deleted commit cmt-demo\n",
		},
		{
			args:     []string{"vm", "fork", "cmt-demo", "--tag", "job=1", "--name", "review", "--no-allow", "--drop", "10.0.0.0/8"},
			requests: []string{`POST /vm/commits/cmt-demo/fork?wait=none {"network":{"allow":[],"drop":["10.0.0.0/8"]},"tags":["job=1","name=review"],"persistent":false}`},
			out:      "VM forked\n  Hostname: sbox-2\n  Commit:   cmt-demo (of sbox-1)\n  Status:   starting\n  Persistent: false\n",
		},
		{
			args:     []string{"vm", "fork", "cmt-demo", "--wait", "--timeout", "2m", "--allow", "203.0.113.0/24", "--persistent", "--json"},
			requests: []string{`POST /vm/commits/cmt-demo/fork?timeout=2m0s&wait=agent {"network":{"allow":["203.0.113.0/24"]},"persistent":true}`},
			out:      `"child_status": "running"`, json: true,
		},
	} {
		code, out, errOut := runCLI(t, nil, append(tc.args, "--url", srv.URL)...)
		if code != 0 {
			t.Errorf("%v: exit %d, %s", tc.args, code, errOut)
			continue
		}
		if diff := cmp.Diff(tc.requests, f.take()); diff != "" {
			t.Errorf("%v requests (-want +got):\n%s", tc.args, diff)
		}
		if tc.json && (!strings.Contains(out, tc.out) || !json.Valid([]byte(out))) || !tc.json && out != tc.out {
			t.Errorf("%v printed %q, want %q", tc.args, out, tc.out)
		}
	}
}

// A refused delete is an error naming why; --allow and --no-allow together
// are refused before any request.
func TestCommitCommandErrors(t *testing.T) {
	f, srv := newCommitAPI(t)
	code, _, errOut := runCLI(t, nil, "vm", "commit", "delete", "cmt-used", "--url", srv.URL)
	if code != 1 || !strings.Contains(errOut, `source vm "sbox-1"`) {
		t.Errorf("delete of a used commit: exit %d, %q", code, errOut)
	}
	f.take()
	code, _, errOut = runCLI(t, nil, "vm", "fork", "cmt-demo", "--allow", "1.2.3.4/32", "--no-allow", "--url", srv.URL)
	if code != 1 || len(f.take()) != 0 {
		t.Errorf("--allow with --no-allow: exit %d, %q", code, errOut)
	}
	code, _, errOut = runCLI(t, nil, "vm", "commit", "delete", "../x", "--url", srv.URL)
	if code != 1 || len(f.take()) != 0 || !strings.Contains(errOut, "commit id") {
		t.Errorf("delete of ../x: exit %d, %q", code, errOut)
	}
}
