package server

import (
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openslicer/openslicer/internal/secrets"
)

// TestCatalogue sends every method and path of the spec's endpoint
// catalogue (spec §2, with sbox-9 an unknown VM, nope an unknown secret
// and cmt-demo an unknown commit): each is served, or answers 501 naming
// itself when it is not built yet. None is 404 for the route itself (a 404
// must name the unknown VM, secret or commit), and none is 405.
func TestCatalogue(t *testing.T) {
	st, err := secrets.Open(filepath.Join(t.TempDir(), "secrets"))
	if err != nil {
		t.Fatal(err)
	}
	ts := newTestServerWith(t, "", st)
	const served, notBuilt = false, true
	for _, tc := range []struct {
		method, path string
		notBuilt     bool
	}{
		{"GET", "/info", served},                                            // 1
		{"GET", "/hostgroup", served},                                       // 2
		{"GET", "/hostgroup/sbox/nodes", served},                            // 3
		{"GET", "/hostgroup/sbox/nodes?tag=a", served},                      // 3
		{"POST", "/hostgroup/sbox/nodes?wait=bogus", served},                // 4 (400: no VM made)
		{"DELETE", "/hostgroup/sbox/nodes/sbox-9", served},                  // 5
		{"GET", "/nodes", served},                                           // 6
		{"GET", "/nodes/stats", served},                                     // 7
		{"GET", "/node/sbox-9/stats", served},                               // 8
		{"GET", "/vm/sbox-9", served},                                       // 9
		{"GET", "/vm/sbox-9/tags", served},                                  // 10
		{"PATCH", "/vm/sbox-9/tags", served},                                // 10
		{"GET", "/vm/sbox-9/logs?lines=5", served},                          // 11
		{"HEAD", "/vm/sbox-9/health", served},                               // 12
		{"GET", "/vm/sbox-9/health", served},                                // 12
		{"POST", "/vm/sbox-9/shutdown?action=shutdown", served},             // 13
		{"POST", "/vm/sbox-9/pause", served},                                // 14
		{"POST", "/vm/sbox-9/resume", served},                               // 14
		{"POST", "/vm/sbox-9/suspend", served},                              // 14
		{"POST", "/vm/sbox-9/restore", served},                              // 15
		{"POST", "/vm/sbox-9/relaunch", served},                             // 16
		{"POST", "/vm/sbox-9/exec?cmd=true", served},                        // 17
		{"POST", "/vm/sbox-9/exec?cmd=true&buffered=true", served},          // 18
		{"POST", "/vm/sbox-9/exec?cmd=true&background=true", served},        // 19
		{"GET", "/vm/sbox-9/exec", served},                                  // 19
		{"GET", "/vm/sbox-9/exec/e1", served},                               // 19
		{"DELETE", "/vm/sbox-9/exec/e1", served},                            // 19
		{"GET", "/vm/sbox-9/exec/e1/logs?follow=true", served},              // 19
		{"POST", "/vm/sbox-9/exec/e1/kill", served},                         // 19
		{"GET", "/vm/sbox-9/exec/e1/wait-exit", served},                     // 19
		{"POST", "/vm/sbox-9/cp?path=/tmp/x", served},                       // 20
		{"GET", "/vm/sbox-9/cp?path=/tmp/x", served},                        // 20
		{"GET", "/vm/sbox-9/fs/readdir?path=/", served},                     // 21
		{"GET", "/vm/sbox-9/fs/stat?path=/", served},                        // 21
		{"POST", "/vm/sbox-9/fs/mkdir", served},                             // 21
		{"DELETE", "/vm/sbox-9/fs/remove?path=/x", served},                  // 21
		{"GET", "/vm/sbox-9/fs/watch?paths=/", served},                      // 22
		{"GET", "/vm/sbox-9/shell", served},                                 // 23
		{"GET", "/vm/sbox-9/forward", served},                               // 24
		{"GET", "/secrets", served},                                         // 25
		{"POST", "/secrets", served},                                        // 25
		{"PATCH", "/secrets/nope", served},                                  // 25
		{"DELETE", "/secrets/nope", served},                                 // 25
		{"POST", "/vm/sbox-9/commit", served},                               // 26
		{"GET", "/vm/commits", served},                                      // 26
		{"GET", "/vm/commits?tag=a&cache_key=k&source=s&mode=disk", served}, // 26
		{"DELETE", "/vm/commits/cmt-demo", served},                          // 26
		{"POST", "/vm/commits/cmt-demo/fork?wait=agent", served},            // 26
		{"POST", "/proxy/v1/clients", notBuilt},                             // 27
		{"GET", "/proxy/v1/clients", notBuilt},                              // 27
		{"DELETE", "/proxy/v1/clients/c1", notBuilt},                        // 27
		{"GET", "/proxy/v1/clients/c1", notBuilt},                           // 27
		{"POST", "/proxy/v1/secrets", notBuilt},                             // 27
		{"GET", "/proxy/v1/secrets", notBuilt},                              // 27
		{"DELETE", "/proxy/v1/secrets/s1", notBuilt},                        // 27
		{"POST", "/proxy/v1/allows", notBuilt},                              // 27
		{"DELETE", "/proxy/v1/allows/c1/example.com", notBuilt},             // 27
		{"POST", "/proxy/v1/allows/revoke", notBuilt},                       // 27
		{"POST", "/daemon/shutdown", served},                                // 28
		{"GET", "/healthz", served},
		{"HEAD", "/healthz", served},
		{"GET", "/metrics", served},
	} {
		status, body := do(t, ts, tc.method, tc.path, "", "")
		route := tc.method + " " + strings.Split(tc.path, "?")[0]
		switch {
		case tc.notBuilt:
			if status != http.StatusNotImplemented || !strings.Contains(body, "not supported by this daemon yet") || !strings.Contains(body, tc.method+" /") {
				t.Errorf("%s = %d %s; want 501 naming the route", route, status, body)
			}
		case status == http.StatusNotImplemented || status == http.StatusMethodNotAllowed:
			t.Errorf("%s = %d %s; want it served", route, status, body)
		case status == http.StatusNotFound && (strings.Contains(body, "no route") || tc.method != "HEAD" && !strings.Contains(body, "sbox-9") && !strings.Contains(body, "nope") && !strings.Contains(body, "cmt-demo")):
			t.Errorf("%s = %d %s; a 404 must name the unknown VM, secret or commit, not the route", route, status, body)
		}
	}
}

// TestMethodNotAllowed: a known path with a method it does not take is 405
// with an Allow header listing the methods it does take; an unknown path
// is 404.
func TestMethodNotAllowed(t *testing.T) {
	ts := newTestServer(t, "")
	for _, tc := range []struct {
		method, path, allow string
	}{
		{"DELETE", "/info", "GET, HEAD"},
		{"POST", "/nodes", "GET, HEAD"},
		{"PUT", "/vm/sbox-9/exec", "GET, HEAD, POST"},
		{"PUT", "/vm/sbox-9", "GET, HEAD"},
		{"GET", "/vm/sbox-9/commit", "POST"},
		{"PATCH", "/vm/commits", "GET, HEAD"},
		{"POST", "/proxy/v1/clients/c1", "GET, HEAD, DELETE"},
		{"DELETE", "/vm/sbox-9/forward", "GET, HEAD"},
		{"GET", "/hostgroup/sbox/nodes/sbox-1", "DELETE"},
		{"GET", "/no/such/route", ""},
		{"GET", "/vm/sbox-9/nope", ""},
		{"GET", "/proxy/v2/clients", ""},
	} {
		req, _ := http.NewRequest(tc.method, ts.URL+tc.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		want := http.StatusMethodNotAllowed
		if tc.allow == "" {
			want = http.StatusNotFound
		}
		if resp.StatusCode != want || resp.Header.Get("Allow") != tc.allow {
			t.Errorf("%s %s = %d, Allow %q; want %d, Allow %q", tc.method, tc.path, resp.StatusCode, resp.Header.Get("Allow"), want, tc.allow)
		}
	}
}
