package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/config"
	"github.com/openslicer/openslicer/internal/hypervisor/hypervisortest"
	"github.com/openslicer/openslicer/internal/secrets"
	"github.com/openslicer/openslicer/internal/store"
	"github.com/openslicer/openslicer/internal/vm"
)

type images struct{}

func (images) Resolve(ctx context.Context, name string) (vm.BootImage, error) {
	return vm.BootImage{Kernel: "/fake/vmlinuz", RootFS: "/dev/null"}, nil
}

func clone(ctx context.Context, src, dst string, size int64) (string, error) {
	return "raw", os.WriteFile(dst, nil, 0o644)
}

// newTestServer serves the API over a Manager with a fake backend.
func newTestServer(t testing.TB, token string) *httptest.Server {
	return newTestServerWith(t, token, nil)
}

func newTestServerWith(t testing.TB, token string, sec SecretStore) *httptest.Server {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	no := false
	cfg := &config.Config{HostGroups: []config.HostGroup{{Name: "sbox", VCPU: 2, RamGB: 1}}, Image: "min", GracefulShutdown: &no}
	config.ApplyDefaults(cfg, "qemu")
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	m := vm.New(vm.Options{
		Config: cfg, Backend: &hypervisortest.Fake{}, Store: st, Images: images{}, Clone: clone,
		DisksDir: dir, RunDir: filepath.Join(dir, "run"), LogDir: filepath.Join(dir, "logs"), Log: log,
		Layers: copyLayers{}, CommitsDir: filepath.Join(dir, "commits"),
	})
	ts := httptest.NewServer(New(Options{Manager: m, Log: log, Token: token, Info: api.Info{Version: "test", Accelerator: "tcg", AcceleratorReason: "this host has no /dev/kvm"}, Secrets: sec}).Handler())
	t.Cleanup(func() {
		ts.Close()
		m.Close(context.Background(), vm.StopShutDown)
		st.Close()
	})
	return ts
}

func do(t *testing.T, ts *httptest.Server, method, path, token, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, ts.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(data)
}

func TestRoutesAndStatus(t *testing.T) {
	const tok = "secret"
	ts := newTestServer(t, tok)
	for _, tc := range []struct {
		method, path, token, body string
		status                    int
		contains                  string
	}{
		{"GET", "/healthz", "", "", 200, "OK"},
		{"HEAD", "/healthz", "", "", 200, ""},
		{"GET", "/info", "", "", 401, `"error"`},
		{"GET", "/info", "wrong", "", 401, `"error"`},
		{"GET", "/info", tok, "", 200, `{"version":"test","accelerator":"tcg","accelerator_reason":"this host has no /dev/kvm"}`},
		{"GET", "/hostgroup", tok, "", 200, `"name":"sbox","count":1,"ram_bytes":1073741824,"cpus":2`},
		{"GET", "/nodes", tok, "", 200, "[]"},
		{"GET", "/nodes?tag=a&tag_prefix=b", tok, "", 400, "tag_prefix"},
		{"GET", "/hostgroup/nope/nodes", tok, "", 404, "nope"},
		{"POST", "/hostgroup/nope/nodes", tok, "{}", 404, "nope"},
		{"POST", "/hostgroup/sbox/nodes", tok, `{"cpus":9}`, 400, "limit of 2"},
		{"POST", "/hostgroup/sbox/nodes", tok, `{"bogus":1}`, 400, "bogus"},
		{"POST", "/hostgroup/sbox/nodes?timeout=soon", tok, `{}`, 400, "timeout"},
		{"POST", "/hostgroup/sbox/nodes", tok, `{"tags":["user=alice"]}`, 201, `"hostname":"sbox-1"`},
		{"GET", "/hostgroup/sbox/nodes%3Ftag=user%3Dalice", tok, "", 200, `"sbox-1"`}, // Slicer SDK's encoding
		{"GET", "/nodes?tag_prefix=user%3D", tok, "", 200, `"tags":["user=alice"],"status":"Running"`},
		{"GET", "/nodes?tag=user%3Dbob", tok, "", 200, "[]"},
		{"POST", "/vm/sbox-9/exec?cmd=true", tok, "", 404, "sbox-9"},
		{"POST", "/vm/sbox-1/exec", tok, "", 400, "cmd is required"},
		{"GET", "/vm/sbox-9/health", tok, "", 404, ""},
		{"GET", "/vm/sbox-1/logs?lines=x", tok, "", 400, "lines"},
		{"GET", "/vm/sbox-1", tok, "", 200, `"hostname":"sbox-1"`},
		{"GET", "/vm/sbox-1/tags", tok, "", 200, `{"hostname":"sbox-1","tags":["user=alice"]}`},
		{"PATCH", "/vm/sbox-1/tags", tok, `{"add":["name=web"]}`, 200, `"tags":["user=alice","name=web"]`},
		{"PATCH", "/vm/sbox-1/tags", tok, `{"remove":["name=web"]}`, 400, "immutable"},
		{"PATCH", "/vm/sbox-1/tags", tok, `{"replace":[]}`, 200, `"tags":["name=web"]`},
		{"POST", "/hostgroup/sbox/nodes", tok, `{"tags":["name=web"]}`, 409, "taken"},
		{"POST", "/vm/sbox-1/pause", tok, "", 200, "paused"},
		{"POST", "/vm/sbox-1/pause", tok, "", 409, `pause vm \"sbox-1\": it is Paused`},
		{"GET", "/nodes", tok, "", 200, `"status":"Paused"`},
		{"POST", "/vm/sbox-1/exec?cmd=true", tok, "", 409, `exec in vm \"sbox-1\": it is Paused`},
		{"POST", "/vm/sbox-1/resume", tok, "", 200, "resumed"},
		{"POST", "/vm/sbox-1/relaunch", tok, "", 409, `relaunch vm \"sbox-1\": it is Running`},
		{"POST", "/vm/sbox-1/shutdown?action=halt", tok, "", 400, "action"},
		{"DELETE", "/hostgroup/other/nodes/sbox-1", tok, "", 404, ""},
		{"DELETE", "/hostgroup/sbox/nodes/sbox-1", tok, "", 200, `"disk_removed":"true"`},
		{"DELETE", "/hostgroup/sbox/nodes/sbox-1", tok, "", 404, ""},
		{"GET", "/no/such/route", tok, "", 404, `"error"`},
		{"GET", "/metrics", "", "", 401, `"error"`},
		{"GET", "/metrics", tok, "", 200, `slicer_vm_launch_total{code="201",host_group="sbox"} 1`},
		{"GET", "/metrics", tok, "", 200, "slicer_accelerator{accel=\"kvm\"} 0\nslicer_accelerator{accel=\"tcg\"} 1\n"},
	} {
		status, body := do(t, ts, tc.method, tc.path, tc.token, tc.body)
		if status != tc.status || !strings.Contains(body, tc.contains) {
			t.Errorf("%s %s = %d %s; want %d containing %q", tc.method, tc.path, status, body, tc.status, tc.contains)
		}
		if status >= 400 && tc.method != "HEAD" {
			var e api.ErrorResponse
			if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error == "" {
				t.Errorf("%s %s: error body %q is not {\"error\": ...}", tc.method, tc.path, body)
			}
		}
	}
}

func TestNoAuthWhenTokenEmpty(t *testing.T) {
	ts := newTestServer(t, "")
	if status, _ := do(t, ts, "GET", "/nodes", "", ""); status != 200 {
		t.Fatalf("GET /nodes without auth = %d, want 200", status)
	}
	// Slicer's SDK sends "Bearer " with an empty token on exec: ignored.
	if status, _ := do(t, ts, "GET", "/nodes", " ", ""); status != 200 {
		t.Fatalf("GET /nodes with an empty bearer = %d, want 200", status)
	}
}

func TestLoadOrCreateToken(t *testing.T) {
	path := filepath.Join(t.TempDir(), "auth", "token")
	tok, err := LoadOrCreateToken(path)
	if err != nil || len(tok) != 64 {
		t.Fatalf("LoadOrCreateToken = %q, %v", tok, err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode = %v, %v; want 0600", fi.Mode(), err)
	}
	again, err := LoadOrCreateToken(path)
	if err != nil || again != tok {
		t.Fatalf("second LoadOrCreateToken = %q, %v; want the same token", again, err)
	}
}

func TestSecretsRoutes(t *testing.T) {
	st, err := secrets.Open(filepath.Join(t.TempDir(), "secrets"))
	if err != nil {
		t.Fatal(err)
	}
	ts := newTestServerWith(t, "", st)
	for _, tc := range []struct {
		method, path, body string
		status             int
		contains           string
	}{
		{"GET", "/secrets", "", 200, "[]"},
		{"POST", "/secrets", `{"name":"db","data":"c2VjcmV0","permissions":"0640","uid":1000}`, 201, `"name":"db","size":6,"permissions":"0640","uid":1000`},
		{"POST", "/secrets", `{"name":"db","data":"eA=="}`, 409, "exists"},
		{"POST", "/secrets", `{"name":"../x","data":"eA=="}`, 400, "name"},
		{"POST", "/secrets", `{"name":"y","data":"not base64!"}`, 400, "base64"},
		{"PATCH", "/secrets/db", `{"data":"bmV3LXZhbHVl"}`, 200, `"size":9`},
		{"PATCH", "/secrets/nope", `{"data":"eA=="}`, 404, ""},
		{"GET", "/secrets", "", 200, `"modified_at"`},
		{"DELETE", "/secrets/db", "", 200, ""},
		{"DELETE", "/secrets/db", "", 404, ""},
	} {
		status, body := do(t, ts, tc.method, tc.path, "", tc.body)
		if status != tc.status || !strings.Contains(body, tc.contains) {
			t.Errorf("%s %s %s = %d %s; want %d containing %q", tc.method, tc.path, tc.body, status, body, tc.status, tc.contains)
		}
		if strings.Contains(body, "c2VjcmV0") || strings.Contains(body, "secret\"") {
			t.Errorf("%s %s leaked a secret value: %s", tc.method, tc.path, body)
		}
	}
	if status, _ := do(t, newTestServer(t, ""), "GET", "/secrets", "", ""); status != 501 {
		t.Errorf("GET /secrets without a store = %d, want 501", status)
	}
}

// TestTagLimitsOverHTTP: past the tag limits, creates and tag updates are
// 400 with the limit named, and nothing changes.
func TestTagLimitsOverHTTP(t *testing.T) {
	ts := newTestServer(t, "")
	tagsJSON := func(n, size int) string {
		tags := make([]string, n)
		for i := range tags {
			tags[i] = fmt.Sprintf("t%d=%s", i, strings.Repeat("v", size))
		}
		b, _ := json.Marshal(tags)
		return string(b)
	}
	for _, tc := range []struct {
		method, path, body string
		status             int
		contains           string
	}{
		{"POST", "/hostgroup/sbox/nodes", `{"tags":` + tagsJSON(api.MaxTagsPerVM+1, 1) + `}`, 400, "at most 256 tags"},
		{"POST", "/hostgroup/sbox/nodes", `{"tags":` + tagsJSON(1, api.MaxTagBytes) + `}`, 400, "limit is 1024 bytes"},
		{"POST", "/hostgroup/sbox/nodes", `{"tags":["keep"]}`, 201, `"hostname":"sbox-1"`},
		{"PATCH", "/vm/sbox-1/tags", `{"add":` + tagsJSON(api.MaxTagsPerVM, 1) + `}`, 400, "at most 256 tags (the limit), and this update would give it 257"},
		{"PATCH", "/vm/sbox-1/tags", `{"replace":` + tagsJSON(1, api.MaxTagBytes) + `}`, 400, "limit is 1024 bytes"},
		{"GET", "/vm/sbox-1/tags", "", 200, `"tags":["keep"]`},
		{"PATCH", "/vm/sbox-1/tags", `{"replace":` + tagsJSON(api.MaxTagsPerVM, 1) + `}`, 200, `"t255=v"`},
	} {
		status, body := do(t, ts, tc.method, tc.path, "", tc.body)
		if status != tc.status || !strings.Contains(body, tc.contains) {
			t.Errorf("%s %s = %d %.300s; want %d containing %q", tc.method, tc.path, status, body, tc.status, tc.contains)
		}
	}
}

// TestJSONBodyLimit: a JSON body over api.MaxJSONBodyBytes is 413 naming
// the limit, whether its length is declared or not, on every JSON route; a
// body just under the limit is decoded.
func TestJSONBodyLimit(t *testing.T) {
	st, err := secrets.Open(filepath.Join(t.TempDir(), "secrets"))
	if err != nil {
		t.Fatal(err)
	}
	ts := newTestServerWith(t, "", st)
	if status, body := do(t, ts, "POST", "/hostgroup/sbox/nodes", "", "{}"); status != 201 {
		t.Fatalf("create: %d %s", status, body)
	}
	big := `{"userdata":"` + strings.Repeat("x", 10<<20) + `"}`
	for _, tc := range []struct{ method, path string }{
		{"POST", "/hostgroup/sbox/nodes"},
		{"PATCH", "/vm/sbox-1/tags"},
		{"POST", "/vm/sbox-1/shutdown"},
		{"POST", "/secrets"},
		{"PATCH", "/secrets/db"},
	} {
		for _, declared := range []bool{true, false} {
			var body io.Reader = strings.NewReader(big)
			if !declared {
				body = io.MultiReader(body) // unknown length: sent chunked
			}
			req, _ := http.NewRequest(tc.method, ts.URL+tc.path, body)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatalf("%s %s: %v", tc.method, tc.path, err)
			}
			data, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(data), "limit of 4194304 bytes (4 MiB)") {
				t.Errorf("%s %s with 10 MB (length declared: %v) = %d %s; want 413 naming the limit", tc.method, tc.path, declared, resp.StatusCode, data)
			}
		}
	}
	// Just under the limit: decoded (and then refused for what it says).
	under := `{"data":"` + strings.Repeat("A", api.MaxJSONBodyBytes-100) + `"}`
	if status, body := do(t, ts, "POST", "/secrets", "", under); status != 400 || !strings.Contains(body, "name") {
		t.Errorf("POST /secrets just under the limit = %d %.200s; want it decoded (400 for the missing name)", status, body)
	}
}

// TestBearerScheme: the scheme name matches in any case (RFC 7235), the
// token must match exactly, and anything else is 401 with a JSON error.
func TestBearerScheme(t *testing.T) {
	const tok = "secret"
	ts := newTestServer(t, tok)
	for header, want := range map[string]int{
		"Bearer secret":   200,
		"bearer secret":   200,
		"BEARER secret":   200,
		"bEaReR  secret":  200,
		"Bearer secret ":  200,
		"Bearer Secret":   401,
		"Bearer secretx":  401,
		"Bearer":          401,
		"Bearer ":         401,
		"Bearersecret":    401,
		"Basic secret":    401,
		"secret":          401,
		"Token secret":    401,
		"Bearer secret x": 401,
	} {
		req, _ := http.NewRequest("GET", ts.URL+"/info", nil)
		req.Header.Set("Authorization", header)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("Authorization %q = %d, want %d", header, resp.StatusCode, want)
		}
		var e api.ErrorResponse
		if want == 401 && (json.Unmarshal(body, &e) != nil || e.Error == "") {
			t.Errorf("Authorization %q: 401 body %q is not a JSON error", header, body)
		}
	}
}

// POST /daemon/shutdown stops the daemon as SIGTERM does; ?detach=true (an
// OpenSlicer extension) asks it to leave persistent VMs running.
func TestDaemonShutdownDetach(t *testing.T) {
	for _, tc := range []struct {
		query  string
		status int
		calls  []bool
	}{
		{"", 202, []bool{false}},
		{"?detach=true", 202, []bool{true}},
		{"?detach=false", 202, []bool{false}},
		{"?detach=maybe", 400, nil},
	} {
		var calls []bool
		log := slog.New(slog.NewTextHandler(io.Discard, nil))
		srv := New(Options{Log: log, Shutdown: func(detach bool) { calls = append(calls, detach) }})
		ts := httptest.NewServer(srv.Handler())
		status, body := do(t, ts, "POST", "/daemon/shutdown"+tc.query, "", "")
		ts.Close()
		if status != tc.status || !slices.Equal(calls, tc.calls) {
			t.Errorf("POST /daemon/shutdown%s = %d %q, shutdown calls %v; want %d, %v", tc.query, status, body, calls, tc.status, tc.calls)
		}
	}
}

// slicer_vm_running counts VMs by Slicer's status values: a suspended VM
// is Paused, as lists show it.
func TestMetricsCountVMsByState(t *testing.T) {
	const tok = "secret"
	ts := newTestServer(t, tok)
	for range 3 {
		if code, body := do(t, ts, "POST", "/hostgroup/sbox/nodes", tok, `{"persistent":true}`); code != 201 {
			t.Fatalf("create = %d %s", code, body)
		}
	}
	for path, want := range map[string]int{"/vm/sbox-2/pause": 200, "/vm/sbox-3/suspend": 200} {
		if code, body := do(t, ts, "POST", path, tok, ""); code != want {
			t.Fatalf("POST %s = %d %s", path, code, body)
		}
	}
	_, body := do(t, ts, "GET", "/metrics", tok, "")
	for _, line := range []string{
		`slicer_vm_running{api="true",host_group="sbox",state="Running"} 1`,
		`slicer_vm_running{api="true",host_group="sbox",state="Paused"} 2`,
	} {
		if !strings.Contains(body, line+"\n") {
			t.Errorf("metrics lack %q:\n%s", line, grepLines(body, "slicer_vm_running"))
		}
	}
}

func grepLines(text, prefix string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
