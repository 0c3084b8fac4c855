package vm

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/hypervisor"
	"github.com/openslicer/openslicer/internal/hypervisor/hypervisortest"
)

// nextWith returns the manager of a next daemon on e's store and
// directories, whose own backend is backend and which also has others,
// after Recover; it returns Recover's error.
func (e *env) nextWith(t *testing.T, backend hypervisor.Backend, others ...hypervisor.Backend) (*Manager, error) {
	t.Helper()
	m := New(Options{
		Config: e.m.opt.Config, Backend: backend, Backends: others, Store: e.store, Images: e.m.opt.Images, Clone: fakeClone,
		DisksDir: e.m.opt.DisksDir, RunDir: e.m.opt.RunDir, LogDir: e.m.opt.LogDir,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Network: e.m.opt.Network,
		Layers: e.m.opt.Layers, CommitsDir: e.m.opt.CommitsDir,
	})
	t.Cleanup(func() { m.Close(context.Background(), StopDetach) })
	return m, m.Recover(context.Background())
}

// A VM is re-attached, relaunched and restored by the backend its record
// names, not by the daemon's own.
func TestRecoverUsesRecordedBackend(t *testing.T) {
	host := &hypervisortest.Host{}
	first := &hypervisortest.Fake{Called: "first", Host: host}
	e := newEnv(t, first)
	ctx := context.Background()
	if _, err := e.m.Create(ctx, "sbox", api.CreateNodeRequest{Persistent: true}, CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if rec := e.record(t, "sbox-1"); rec.Backend != "first" {
		t.Fatalf("record names backend %q, want first", rec.Backend)
	}
	if err := e.m.Close(ctx, StopDetach); err != nil {
		t.Fatal(err)
	}

	// The next daemon is configured with another backend, and has the
	// first one too (on the same host: its processes outlived the daemon).
	other := &hypervisortest.Fake{Called: "other"}
	again := &hypervisortest.Fake{Called: "first", Host: host}
	m, err := e.nextWith(t, other, again)
	if err != nil {
		t.Fatalf("Recover: %v", err)
	}
	if n, _ := m.List(Filter{}); len(n) != 1 || n[0].State != api.StateRunning {
		t.Fatalf("after Recover: %+v, want sbox-1 running, re-attached", n)
	}
	if err := m.Pause(ctx, "sbox-1"); err != nil || !again.Last("sbox-1").Paused() {
		t.Fatalf("Pause of the re-attached vm: %v (machine paused: %v)", err, again.Last("sbox-1").Paused())
	}
	if err := m.Suspend(ctx, "sbox-1"); err != nil {
		t.Fatalf("Suspend: %v", err)
	}
	if man, err := hypervisor.ReadManifest(m.statePath("sbox-1")); err != nil || man.Backend != "first" {
		t.Fatalf("state after Suspend: %+v, %v; want one the first backend wrote", man, err)
	}
	if err := m.Restore(ctx, "sbox-1", CreateOptions{}); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if len(other.Running()) != 0 || len(again.Running()) != 1 || again.Last("sbox-1").Spec.RestoreFrom == "" {
		t.Fatalf("restored by the wrong backend: other runs %d, first runs %d", len(other.Running()), len(again.Running()))
	}
	again.Last("sbox-1").Exit()
	waitFor(t, func() bool { n, _ := m.List(Filter{}); return n[0].State == api.StateStopped })
	if _, err := m.Relaunch(ctx, "sbox-1", CreateOptions{}); err != nil {
		t.Fatalf("Relaunch: %v", err)
	}
	if len(other.Running()) != 0 || len(again.Running()) != 1 {
		t.Fatalf("relaunched by the wrong backend: other runs %d, first runs %d", len(other.Running()), len(again.Running()))
	}
	if rec := e.record(t, "sbox-1"); rec.Backend != "first" {
		t.Errorf("record names backend %q after relaunch, want first", rec.Backend)
	}
}

// A VM whose backend the daemon does not have is left alone: Recover says
// so, and its record, disk, machine and network stay as they were.
func TestRecoverLeavesUnknownBackendAlone(t *testing.T) {
	host := &hypervisortest.Host{}
	first := &hypervisortest.Fake{Called: "first", Host: host}
	net := &fakeNetwork{}
	e := newEnvWith(t, first, netGroups(), net)
	ctx := context.Background()
	if _, err := e.m.Create(ctx, "br", api.CreateNodeRequest{Persistent: true}, CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := e.m.Close(ctx, StopDetach); err != nil {
		t.Fatal(err)
	}
	before := e.record(t, "br-1")

	other := &hypervisortest.Fake{Called: "other", Host: host}
	m, err := e.nextWith(t, other)
	if !errors.Is(err, hypervisor.ErrUnknownBackend) || !strings.Contains(err.Error(), `"first"`) {
		t.Fatalf("Recover error = %v, want one naming the unknown backend first", err)
	}
	if n, _ := m.List(Filter{}); len(n) != 0 {
		t.Errorf("a vm of an unknown backend is listed: %+v", n)
	}
	if err := m.Close(ctx, StopShutDown); err != nil {
		t.Fatal(err)
	}
	if after := e.record(t, "br-1"); !reflect.DeepEqual(before, after) {
		t.Errorf("record changed:\nbefore %+v\nafter  %+v", before, after)
	}
	if _, err := os.Stat(before.Disk); err != nil {
		t.Errorf("disk of the vm left alone: %v", err)
	}
	if r := first.Running(); len(r) != 1 {
		t.Errorf("%d machines of the first backend run, want the one left alone", len(r))
	}
	if up := net.upVMs(); len(up) != 1 || up[0] != "br-1" {
		t.Errorf("network objects up: %v, want those of br-1 kept", up)
	}
}

// A record from before records named their backend is handled by the one
// its machine handle names.
func TestRecoverRecordWithoutBackend(t *testing.T) {
	host := &hypervisortest.Host{}
	first := &hypervisortest.Fake{Called: "first", Host: host}
	e := newEnv(t, first)
	ctx := context.Background()
	if _, err := e.m.Create(ctx, "sbox", api.CreateNodeRequest{Persistent: true}, CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := e.m.Close(ctx, StopDetach); err != nil {
		t.Fatal(err)
	}
	rec := e.record(t, "sbox-1")
	rec.Backend = ""
	if err := e.store.Put(rec); err != nil {
		t.Fatal(err)
	}
	var h hypervisor.Handle
	if err := json.Unmarshal(rec.Machine, &h); err != nil || h.Backend != "first" {
		t.Fatalf("handle %s: %v", rec.Machine, err)
	}

	m, err := e.nextWith(t, &hypervisortest.Fake{Called: "other"}, &hypervisortest.Fake{Called: "first", Host: host})
	if err != nil {
		t.Fatalf("Recover: %v", err)
	}
	if n, _ := m.List(Filter{}); len(n) != 1 || n[0].State != api.StateRunning {
		t.Fatalf("after Recover: %+v, want sbox-1 re-attached", n)
	}
	if err := m.Pause(ctx, "sbox-1"); err != nil {
		t.Fatal(err)
	}
	if rec := e.record(t, "sbox-1"); rec.Backend != "first" {
		t.Errorf("record names backend %q once written again, want first", rec.Backend)
	}
}
