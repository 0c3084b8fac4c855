package server

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"net/http/httptest"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/config"
	"github.com/openslicer/openslicer/internal/hypervisor/hypervisortest"
	"github.com/openslicer/openslicer/internal/store"
	"github.com/openslicer/openslicer/internal/vm"
)

// GET /info shows each warm pool (an extension field) and /metrics counts
// it; a daemon without pools shows no pools field at all.
func TestInfoAndMetricsShowPools(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	no := false
	cfg := &config.Config{HostGroups: []config.HostGroup{{Name: "sbox", VCPU: 2, RamGB: 1, Warm: 2}, {Name: "cold", VCPU: 1, RamGB: 1}}, Image: "min", GracefulShutdown: &no}
	config.ApplyDefaults(cfg, "qemu")
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	m := vm.New(vm.Options{
		Config: cfg, Backend: &hypervisortest.Fake{}, Store: st, Images: images{}, Clone: clone,
		DisksDir: dir, RunDir: filepath.Join(dir, "run"), LogDir: filepath.Join(dir, "logs"), Log: log,
	}) // pools not started: the target shows, nothing ready
	ts := httptest.NewServer(New(Options{Manager: m, Log: log, Info: api.Info{Version: "test"}}).Handler())
	t.Cleanup(func() {
		ts.Close()
		m.Close(context.Background(), vm.StopShutDown)
		st.Close()
	})
	code, body := do(t, ts, "GET", "/info", "", "")
	var info api.Info
	if err := json.Unmarshal([]byte(body), &info); err != nil || code != 200 {
		t.Fatalf("GET /info = %d %s", code, body)
	}
	if len(info.Pools) != 1 || info.Pools[0] != (api.PoolInfo{HostGroup: "sbox", Target: 2}) {
		t.Fatalf("pools = %+v", info.Pools)
	}
	_, body = do(t, ts, "GET", "/metrics", "", "")
	for _, line := range []string{
		`slicer_warm_pool_vms{host_group="sbox",state="target"} 2`,
		`slicer_warm_pool_vms{host_group="sbox",state="ready"} 0`,
	} {
		if !strings.Contains(body, line+"\n") {
			t.Errorf("metrics lack %q:\n%s", line, grepLines(body, "slicer_warm_pool_vms"))
		}
	}

	ts2 := newTestServer(t, "")
	if _, body := do(t, ts2, "GET", "/info", "", ""); strings.Contains(body, "pools") {
		t.Errorf("a daemon without pools shows them: %s", body)
	}
}
