package vm

import (
	"context"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/hypervisor"
	"github.com/openslicer/openslicer/internal/hypervisor/hypervisortest"
	"github.com/openslicer/openslicer/internal/store"
	"github.com/openslicer/openslicer/internal/vmstate"
)

func TestStopActionFor(t *testing.T) {
	for _, tc := range []struct {
		mode                StopMode
		persistent, running bool
		want                stopAction
	}{
		{StopShutDown, false, true, stopRemove},
		{StopSuspend, false, true, stopRemove},
		{StopDetach, false, true, stopRemove},
		{StopDetach, false, false, stopRemove}, // a suspended ephemeral VM
		{StopShutDown, true, true, stopKeep},
		{StopSuspend, true, true, stopSuspend},
		{StopDetach, true, true, stopDetach},
		{StopShutDown, true, false, stopLeave},
		{StopSuspend, true, false, stopLeave},
		{StopDetach, true, false, stopLeave},
	} {
		if got := stopActionFor(tc.mode, tc.persistent, tc.running); got != tc.want {
			t.Errorf("stopActionFor(%d, persistent %v, running %v) = %d, want %d", tc.mode, tc.persistent, tc.running, got, tc.want)
		}
	}
}

// next returns the manager of the next daemon: e's store, backend and
// directories, after Recover and what the daemon runs next at start.
func (e *env) next(t *testing.T) *Manager {
	t.Helper()
	m := New(Options{
		Config: e.m.opt.Config, Backend: e.fake, Store: e.store, Images: e.m.opt.Images, Clone: fakeClone,
		DisksDir: e.m.opt.DisksDir, RunDir: e.m.opt.RunDir, LogDir: e.m.opt.LogDir,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Network: e.m.opt.Network,
		Layers: e.m.opt.Layers, CommitsDir: e.m.opt.CommitsDir,
	})
	t.Cleanup(func() { m.Close(context.Background(), StopShutDown) })
	ctx := context.Background()
	if err := m.Recover(ctx); err != nil {
		t.Fatalf("Recover: %v", err)
	}
	if err := m.RestoreSuspended(ctx); err != nil {
		t.Fatalf("RestoreSuspended: %v", err)
	}
	if err := m.EnsureCount(ctx); err != nil {
		t.Fatalf("EnsureCount: %v", err)
	}
	return m
}

// record returns the stored record of host.
func (e *env) record(t *testing.T, host string) store.VM {
	t.Helper()
	rec, err := e.store.Get(host)
	if err != nil {
		t.Fatalf("record of %s: %v", host, err)
	}
	return rec
}

func (e *env) hasDisk(host string) bool {
	_, err := os.Stat(filepath.Join(e.dir, "disks", host+".img"))
	return err == nil
}

// statuses maps each VM of m to its status and state.
func statuses(t *testing.T, m *Manager) map[string]string {
	t.Helper()
	nodes, err := m.List(Filter{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, n := range nodes {
		out[n.Hostname] = n.Status + "/" + n.State
	}
	return out
}

func mustCreate(t *testing.T, m *Manager, req api.CreateNodeRequest) string {
	t.Helper()
	resp, err := m.Create(context.Background(), "sbox", req, CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return resp.Hostname
}

// A stop without graceful_shutdown kills every VM; persistent ones are kept
// stopped with their disks, ephemeral ones removed. At the next start the
// count VM is launched again from its disk; the API one stays stopped.
func TestCloseShutsDownVMs(t *testing.T) {
	e := newEnv(t, &hypervisortest.Fake{})
	ctx := context.Background()
	one := 1
	e.m.opt.Config.HostGroups[0].Count = &one
	if err := e.m.EnsureCount(ctx); err != nil {
		t.Fatal(err)
	}
	count := "sbox-1"
	persistent := mustCreate(t, e.m, api.CreateNodeRequest{Persistent: true})
	ephemeral := mustCreate(t, e.m, api.CreateNodeRequest{})
	if err := e.m.Pause(ctx, persistent); err != nil {
		t.Fatal(err)
	}

	if err := e.m.Close(ctx, StopShutDown); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if r := e.fake.Running(); len(r) != 0 {
		t.Fatalf("%d machines still run after the daemon stopped", len(r))
	}
	for _, host := range []string{count, persistent} {
		if how := e.fake.Last(host).Ended(); how != "kill" {
			t.Errorf("%s ended by %q, want kill (graceful_shutdown: false)", host, how)
		}
		if rec := e.record(t, host); rec.State != vmstate.Stopped || !e.hasDisk(host) {
			t.Errorf("%s after stop: state %s, disk %v; want stopped with its disk", host, rec.State, e.hasDisk(host))
		}
	}
	if _, err := e.store.Get(ephemeral); err == nil || e.hasDisk(ephemeral) {
		t.Errorf("ephemeral %s kept after the daemon stopped", ephemeral)
	}

	m2 := e.next(t)
	want := map[string]string{count: "Running/running", persistent: "Stopped/stopped"}
	if got := statuses(t, m2); !maps.Equal(got, want) {
		t.Fatalf("after restart: %v, want %v", got, want)
	}
	if r := e.fake.Running(); len(r) != 1 || r[0].Spec.Name != count || r[0].Spec.RestoreFrom != "" {
		t.Fatalf("after restart running %v, want only %s booted from its disk", r, count)
	}
}

// With graceful_shutdown the guest is asked to power off (here: the power
// button, the fake has no agent) and, when it does not, killed after the
// timeout.
func TestCloseGraceful(t *testing.T) {
	for _, ignore := range []bool{false, true} {
		e := newEnv(t, &hypervisortest.Fake{IgnoreShutdown: ignore})
		yes := true
		e.m.opt.Config.GracefulShutdown = &yes
		e.m.opt.ShutdownTimeout = 100 * time.Millisecond
		host := mustCreate(t, e.m, api.CreateNodeRequest{Persistent: true})
		if err := e.m.Close(context.Background(), StopShutDown); err != nil {
			t.Fatal(err)
		}
		want := "shutdown"
		if ignore {
			want = "kill"
		}
		if how := e.fake.Last(host).Ended(); how != want {
			t.Errorf("guest ignoring the power button %v: ended by %q, want %q", ignore, how, want)
		}
		if rec := e.record(t, host); rec.State != vmstate.Stopped {
			t.Errorf("state %s after a graceful stop, want stopped", rec.State)
		}
	}
}

// --suspend-on-shutdown: running and paused persistent VMs are suspended and
// restored at the next start as they were; a VM a client had suspended stays
// suspended; count VMs are restored, not launched again.
func TestCloseSuspendsAndStartRestores(t *testing.T) {
	e := newEnv(t, &hypervisortest.Fake{})
	ctx := context.Background()
	one := 1
	e.m.opt.Config.HostGroups[0].Count = &one
	if err := e.m.EnsureCount(ctx); err != nil {
		t.Fatal(err)
	}
	count := "sbox-1"
	running := mustCreate(t, e.m, api.CreateNodeRequest{Persistent: true})
	paused := mustCreate(t, e.m, api.CreateNodeRequest{Persistent: true})
	bySelf := mustCreate(t, e.m, api.CreateNodeRequest{Persistent: true})
	ephemeral := mustCreate(t, e.m, api.CreateNodeRequest{})
	if err := e.m.Pause(ctx, paused); err != nil {
		t.Fatal(err)
	}
	if err := e.m.Suspend(ctx, bySelf); err != nil {
		t.Fatal(err)
	}

	if err := e.m.Close(ctx, StopSuspend); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if r := e.fake.Running(); len(r) != 0 {
		t.Fatalf("%d machines still run after the daemon stopped", len(r))
	}
	for host, to := range map[string]vmstate.State{count: vmstate.Running, running: vmstate.Running, paused: vmstate.Paused, bySelf: ""} {
		if rec := e.record(t, host); rec.State != vmstate.Suspended || rec.RestoreAtStart != to {
			t.Errorf("%s after stop: state %s, restore at start %q; want suspended, %q", host, rec.State, rec.RestoreAtStart, to)
		}
	}
	if _, err := e.store.Get(ephemeral); err == nil {
		t.Errorf("ephemeral %s kept after the daemon stopped", ephemeral)
	}

	m2 := e.next(t)
	want := map[string]string{
		count: "Running/running", running: "Running/running", paused: "Paused/paused", bySelf: "Paused/suspended",
	}
	if got := statuses(t, m2); !maps.Equal(got, want) {
		t.Fatalf("after restart: %v, want %v", got, want)
	}
	for _, host := range []string{count, running, paused} {
		m := e.fake.Last(host)
		if m.Ended() != "" || m.Spec.RestoreFrom == "" {
			t.Errorf("%s was not restored from its state file", host)
		}
		if rec := e.record(t, host); rec.RestoreAtStart != "" {
			t.Errorf("%s still marked for restore after it was restored", host)
		}
		if _, err := os.Stat(m2.statePath(host)); !os.IsNotExist(err) {
			t.Errorf("state file of restored %s kept: %v", host, err)
		}
	}
	if !e.fake.Last(paused).Paused() {
		t.Errorf("%s restored running, want paused as it was", paused)
	}
}

// A VM that cannot be suspended is stopped instead: nothing keeps running.
func TestCloseSuspendFallsBackToStop(t *testing.T) {
	e := newEnv(t, &hypervisortest.Fake{SuspendErr: hypervisor.ErrUnsupported})
	host := mustCreate(t, e.m, api.CreateNodeRequest{Persistent: true})
	if err := e.m.Close(context.Background(), StopSuspend); err != nil {
		t.Fatal(err)
	}
	if how := e.fake.Last(host).Ended(); how != "kill" {
		t.Errorf("ended by %q, want kill", how)
	}
	if rec := e.record(t, host); rec.State != vmstate.Stopped {
		t.Errorf("state %s, want stopped", rec.State)
	}
}

// A detach leaves persistent VMs running, and the next daemon re-attaches
// the same machine; ephemeral VMs go as on any stop.
func TestCloseDetachAndReattach(t *testing.T) {
	e := newEnv(t, &hypervisortest.Fake{})
	zero := 0
	e.m.opt.Config.HostGroups[0].Count = &zero
	host := mustCreate(t, e.m, api.CreateNodeRequest{Persistent: true})
	ephemeral := mustCreate(t, e.m, api.CreateNodeRequest{})
	machine := e.fake.Last(host)
	if err := e.m.Close(context.Background(), StopDetach); err != nil {
		t.Fatal(err)
	}
	if machine.Ended() != "" {
		t.Fatalf("detached vm ended by %q", machine.Ended())
	}
	if e.fake.Last(ephemeral).Ended() == "" {
		t.Error("ephemeral vm left running by a detach")
	}
	m2 := e.next(t)
	if got := statuses(t, m2); !maps.Equal(got, map[string]string{host: "Running/running"}) {
		t.Fatalf("after restart: %v", got)
	}
	if r := e.fake.Running(); len(r) != 1 || r[0] != machine {
		t.Fatal("the next daemon did not re-attach the same machine")
	}
}
