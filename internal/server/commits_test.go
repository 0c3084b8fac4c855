package server

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/config"
	"github.com/openslicer/openslicer/internal/hypervisor/hypervisortest"
	"github.com/openslicer/openslicer/internal/store"
	"github.com/openslicer/openslicer/internal/vm"
)

// copyLayers is vm.Layers over plain files: a layer is a copy of the disk,
// a disk over it a copy of the layer.
type copyLayers struct{}

func copyFile(src, dst string, perm os.FileMode) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return os.WriteFile(dst, data, perm)
}

func (copyLayers) Freeze(ctx context.Context, disk, format, layer string) error {
	return copyFile(disk, layer, 0o444)
}
func (copyLayers) Unfreeze(disk, format, layer string) error { os.Remove(layer); return nil }
func (copyLayers) Overlay(ctx context.Context, layer, format, dst string) (string, error) {
	return "raw", copyFile(layer, dst, 0o644)
}
func (copyLayers) Drop(layer string) error { os.Remove(layer); return nil }

// fixupAgent is a guest agent that answers health and runs no command:
// every exec (a fork's fix-ups) succeeds.
func fixupAgent(conn net.Conn) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/health", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(api.AgentHealthResponse{AgentUptime: time.Second, UserdataRan: true})
	})
	mux.HandleFunc("POST /v1/exec", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(api.ExecResult{ExitCode: 0})
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	serveAgent(conn, mux)
}

// newForkServer is the API over a manager with commits whose guests run
// fixupAgent.
func newForkServer(t *testing.T) (*httptest.Server, *hypervisortest.Fake) {
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
	fake := &hypervisortest.Fake{Agent: fixupAgent}
	m := vm.New(vm.Options{
		Config: cfg, Backend: fake, Store: st, Images: images{}, Clone: clone,
		DisksDir: dir, RunDir: filepath.Join(dir, "run"), LogDir: filepath.Join(dir, "logs"), Log: log,
		Layers: copyLayers{}, CommitsDir: filepath.Join(dir, "commits"),
	})
	ts := httptest.NewServer(New(Options{Manager: m, Log: log}).Handler())
	t.Cleanup(func() {
		ts.Close()
		m.Close(context.Background(), vm.StopShutDown)
		st.Close()
	})
	return ts, fake
}

// stopVM makes the machine of host exit and waits for the API to show it
// stopped.
func stopVM(t *testing.T, ts *httptest.Server, fake *hypervisortest.Fake, host string) {
	t.Helper()
	fake.Last(host).Exit()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, body := do(t, ts, "GET", "/vm/"+host, "", "")
		if strings.Contains(body, `"status":"Stopped"`) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not stopped: %s", host, body)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func decode[T any](t *testing.T, body string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("decode %q: %v", body, err)
	}
	return v
}

// The commit routes end to end over the fake backend: their statuses (200
// for commit, list, delete and fork, as Slicer's SDK requires), the
// answers' fields, and the 4xx of each rule.
func TestCommitRoutes(t *testing.T) {
	ts, fake := newForkServer(t)
	if status, body := do(t, ts, "GET", "/vm/commits", "", ""); status != 200 || strings.TrimSpace(body) != "[]" {
		t.Errorf("empty list = %d %s, want 200 []", status, body)
	}
	if status, body := do(t, ts, "POST", "/hostgroup/sbox/nodes", "", `{"persistent":true}`); status != http.StatusCreated {
		t.Fatalf("create = %d %s", status, body)
	}
	if status, body := do(t, ts, "POST", "/vm/sbox-1/commit", "", ""); status != http.StatusConflict || !strings.Contains(body, "it is Running") {
		t.Errorf("commit of a running vm = %d %s, want 409 naming its state", status, body)
	}
	stopVM(t, ts, fake, "sbox-1")
	if status, body := do(t, ts, "POST", "/vm/sbox-1/commit", "", `{"cache_key":"k","bogus":1}`); status != http.StatusBadRequest {
		t.Errorf("commit with an unknown field = %d %s, want 400", status, body)
	}
	status, body := do(t, ts, "POST", "/vm/sbox-1/commit", "", `{"cache_key":"k","tags":["a"],"labels":{"x":"y"}}`)
	if status != http.StatusOK {
		t.Fatalf("commit = %d %s", status, body)
	}
	cr := decode[api.CommitVMResponse](t, body)
	if cr.Hostname != "sbox-1" || cr.Status != "committed" || cr.Mode != "disk" || cr.CacheKey != "k" {
		t.Errorf("commit answer %+v", cr)
	}
	if status, body := do(t, ts, "POST", "/vm/sbox-1/commit", "", `{"cache_key":"k"}`); status != http.StatusConflict || !strings.Contains(body, cr.CommitID) {
		t.Errorf("second commit of key k = %d %s, want 409 naming %s", status, body, cr.CommitID)
	}
	for q, want := range map[string]int{"cache_key=k": 1, "tag=a": 1, "tag=a&tag=b": 0, "source=sbox-1&mode=disk": 1, "source=sbox-2": 0} {
		status, body := do(t, ts, "GET", "/vm/commits?"+q, "", "")
		if list := decode[[]api.CommitInfo](t, body); status != 200 || len(list) != want {
			t.Errorf("GET /vm/commits?%s = %d %s, want %d commits", q, status, body, want)
		}
	}

	fork := "/vm/commits/" + cr.CommitID + "/fork"
	for _, tc := range []struct{ query, body, want string }{
		{"?wait=bogus", "", "wait"},
		{"?timeout=soon", "", "timeout"},
		{"", `{"hostname":"x"}`, "hostname"},
		{"", `{"vcpu":3}`, "limit of 2"},
		{"", `{"network":{"allow":[]}}`, "isolated"},
		{"", `{"fixups":["kernel"]}`, "fixup"},
	} {
		if status, body := do(t, ts, "POST", fork+tc.query, "", tc.body); status != http.StatusBadRequest || !strings.Contains(body, tc.want) {
			t.Errorf("fork%s %s = %d %s, want 400 naming %s", tc.query, tc.body, status, body, tc.want)
		}
	}
	if status, body := do(t, ts, "POST", "/vm/commits/cmt-nope/fork", "", ""); status != http.StatusNotFound || !strings.Contains(body, "cmt-nope") {
		t.Errorf("fork of an unknown commit = %d %s, want 404 naming it", status, body)
	}
	if status, body := do(t, ts, "DELETE", "/vm/commits/a%2Fb", "", ""); status != http.StatusBadRequest {
		t.Errorf("delete of id a/b = %d %s, want 400", status, body)
	}
	status, body = do(t, ts, "POST", fork+"?wait=agent&timeout=1m", "", `{"tags":["job=1"],"tag_mode":"replace","secrets":[],"persistent":false,"fixups":[],"vcpu":1,"ram_bytes":536870912}`)
	if status != http.StatusOK {
		t.Fatalf("fork = %d %s, want 200", status, body)
	}
	fr := decode[api.ForkVMResponse](t, body)
	if fr.Hostname != "sbox-2" || fr.SourceHostname != "sbox-1" || fr.CommitID != cr.CommitID || fr.Status != "forked" ||
		fr.ChildStatus != "running" || fr.ParentStatus != "stopped" || fr.Mode != "disk" || fr.Persistent {
		t.Errorf("fork answer %+v", fr)
	}
	_, body = do(t, ts, "GET", "/vm/sbox-2", "", "")
	if d := decode[api.VMDescription](t, body); d.ParentCommitID != cr.CommitID || d.CPUs != 1 || d.RamBytes != 512<<20 || len(d.Tags) != 1 {
		t.Errorf("describe of the child %s", body)
	}
	_, body = do(t, ts, "GET", "/vm/sbox-1", "", "")
	if d := decode[api.VMDescription](t, body); d.CommitID != cr.CommitID {
		t.Errorf("describe of the source %s, want commit_id %s", body, cr.CommitID)
	}
	status, body = do(t, ts, "POST", fork+"?wait=none", "", "")
	if fr := decode[api.ForkVMResponse](t, body); status != 200 || fr.ChildStatus != "starting" {
		t.Errorf("fork wait=none = %d %s", status, body)
	}

	del := "/vm/commits/" + cr.CommitID
	if status, body := do(t, ts, "DELETE", del, "", ""); status != http.StatusConflict || !strings.Contains(body, "sbox-1") || !strings.Contains(body, "sbox-2") {
		t.Errorf("delete of a used commit = %d %s, want 409 naming source and child", status, body)
	}
	for _, h := range []string{"sbox-1", "sbox-2", "sbox-3"} {
		if status, body := do(t, ts, "DELETE", "/hostgroup/sbox/nodes/"+h, "", ""); status != 200 {
			t.Fatalf("delete %s = %d %s", h, status, body)
		}
	}
	status, body = do(t, ts, "DELETE", del, "", "")
	if dr := decode[api.CommitDeleteResponse](t, body); status != 200 || dr.CommitID != cr.CommitID || dr.Status != "deleted" {
		t.Errorf("delete = %d %s", status, body)
	}
	if status, _ := do(t, ts, "DELETE", del, "", ""); status != http.StatusNotFound {
		t.Errorf("second delete = %d, want 404", status)
	}
}
