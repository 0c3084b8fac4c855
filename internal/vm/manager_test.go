package vm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/config"
	"github.com/openslicer/openslicer/internal/hypervisor"
	"github.com/openslicer/openslicer/internal/hypervisor/hypervisortest"
	"github.com/openslicer/openslicer/internal/store"
)

type fakeImages struct{ dir string }

func (f fakeImages) Resolve(ctx context.Context, name string) (BootImage, error) {
	return BootImage{Kernel: "vmlinuz", Initrd: "initrd", RootFS: filepath.Join(f.dir, "rootfs")}, nil
}

// fakeClone writes a small file in place of a disk.
func fakeClone(ctx context.Context, src, dst string, size int64) (string, error) {
	return "raw", os.WriteFile(dst, []byte("disk"), 0o644)
}

type env struct {
	m     *Manager
	fake  *hypervisortest.Fake
	store *store.Store
	dir   string
}

func newEnv(t *testing.T, fake *hypervisortest.Fake) *env {
	t.Helper()
	return newEnvWith(t, fake, []config.HostGroup{{Name: "sbox", VCPU: 2, RamGB: 1}}, nil)
}

// newEnvWith is newEnv with the given host groups and network host.
func newEnvWith(t *testing.T, fake *hypervisortest.Fake, groups []config.HostGroup, net Network) *env {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	no := false
	cfg := &config.Config{HostGroups: groups, Image: "min", GracefulShutdown: &no}
	config.ApplyDefaults(cfg, "qemu")
	e := &env{fake: fake, store: st, dir: dir}
	e.m = New(Options{
		Config: cfg, Backend: fake, Store: st, Images: fakeImages{dir}, Clone: fakeClone,
		DisksDir: filepath.Join(dir, "disks"), RunDir: filepath.Join(dir, "run"), LogDir: filepath.Join(dir, "logs"),
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Network: net,
	})
	os.MkdirAll(e.m.opt.DisksDir, 0o755)
	t.Cleanup(func() {
		e.m.Close(context.Background(), StopShutDown)
		st.Close()
	})
	return e
}

// assertEmpty checks that no record, disk, run dir or running machine is left.
func (e *env) assertEmpty(t *testing.T) {
	t.Helper()
	if recs, _ := e.store.List(); len(recs) != 0 {
		t.Errorf("store records left: %+v", recs)
	}
	if nodes, _ := e.m.List(Filter{}); len(nodes) != 0 {
		t.Errorf("vms left in table: %+v", nodes)
	}
	for _, d := range []string{"disks", "run"} {
		entries, _ := os.ReadDir(filepath.Join(e.dir, d))
		if len(entries) != 0 {
			t.Errorf("%s left: %v", d, entries)
		}
	}
	if r := e.fake.Running(); len(r) != 0 {
		t.Errorf("%d machines still running", len(r))
	}
}

func TestCreateListDelete(t *testing.T) {
	e := newEnv(t, &hypervisortest.Fake{})
	ctx := context.Background()
	resp, err := e.m.Create(ctx, "sbox", api.CreateNodeRequest{Tags: []string{"a=1"}, CPUs: 1}, CreateOptions{})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if resp.Hostname != "sbox-1" {
		t.Fatalf("hostname %s, want sbox-1", resp.Hostname)
	}
	nodes, err := e.m.List(Filter{Tag: "a=1"})
	if err != nil || len(nodes) != 1 || nodes[0].CPUs != 1 || nodes[0].RamBytes != 1<<30 || nodes[0].Status != api.StatusRunning {
		t.Fatalf("List = %+v, %v", nodes, err)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "disks", "sbox-1.img")); err != nil {
		t.Fatalf("disk not created: %v", err)
	}
	removed, err := e.m.Delete(ctx, "sbox", "sbox-1")
	if err != nil || !removed {
		t.Fatalf("Delete = %v, %v", removed, err)
	}
	e.assertEmpty(t)
}

// TestListOrder lists a group's VMs in the order of their number, which
// is not the order of their names past 9.
func TestListOrder(t *testing.T) {
	e := newEnv(t, &hypervisortest.Fake{})
	var want []string
	for range 11 {
		resp, err := e.m.Create(context.Background(), "sbox", api.CreateNodeRequest{}, CreateOptions{})
		if err != nil {
			t.Fatalf("Create: %v", err)
		}
		want = append(want, resp.Hostname)
	}
	nodes, err := e.m.List(Filter{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, n := range nodes {
		got = append(got, n.Hostname)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) || got[9] != "sbox-10" {
		t.Errorf("List order = %v, want %v", got, want)
	}
}

func TestCreateRejects(t *testing.T) {
	e := newEnv(t, &hypervisortest.Fake{})
	for _, tc := range []struct {
		name  string
		group string
		req   api.CreateNodeRequest
		opt   CreateOptions
		want  error
	}{
		{"unknown group", "nope", api.CreateNodeRequest{}, CreateOptions{}, api.ErrNotFound},
		{"cpus above group", "sbox", api.CreateNodeRequest{CPUs: 3}, CreateOptions{}, api.ErrInvalid},
		{"ram above group", "sbox", api.CreateNodeRequest{RamBytes: 2 << 30}, CreateOptions{}, api.ErrInvalid},
		{"hostname", "sbox", api.CreateNodeRequest{Hostname: "x"}, CreateOptions{}, api.ErrInvalid},
		{"disk_image", "sbox", api.CreateNodeRequest{DiskImage: "x.img"}, CreateOptions{}, api.ErrInvalid},
		{"bad wait", "sbox", api.CreateNodeRequest{}, CreateOptions{Wait: "forever"}, api.ErrInvalid},
		{"import_user without a key source", "sbox", api.CreateNodeRequest{ImportUser: "octocat"}, CreateOptions{}, api.ErrNotImplemented},
		{"ip not yet", "sbox", api.CreateNodeRequest{IP: "10.0.0.9"}, CreateOptions{}, api.ErrNotImplemented},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.m.Create(context.Background(), tc.group, tc.req, tc.opt)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Create = %v, want %v", err, tc.want)
			}
		})
	}
	e.assertEmpty(t)
}

func TestCreateUnwindsOnStartFailure(t *testing.T) {
	e := newEnv(t, &hypervisortest.Fake{StartErr: errors.New("boom")})
	_, err := e.m.Create(context.Background(), "sbox", api.CreateNodeRequest{}, CreateOptions{})
	if err == nil {
		t.Fatal("Create succeeded with a failing backend")
	}
	e.assertEmpty(t)
}

func TestWaitTimeoutUnwinds(t *testing.T) {
	e := newEnv(t, &hypervisortest.Fake{}) // no agent: never ready
	_, err := e.m.Create(context.Background(), "sbox", api.CreateNodeRequest{}, CreateOptions{Wait: WaitAgent, Timeout: 200 * time.Millisecond})
	if !errors.Is(err, api.ErrTimeout) {
		t.Fatalf("Create = %v, want ErrTimeout", err)
	}
	e.assertEmpty(t)
}

func TestDeleteDuringCreate(t *testing.T) {
	e := newEnv(t, &hypervisortest.Fake{}) // no agent: the create waits until deleted
	errc := make(chan error, 1)
	go func() {
		_, err := e.m.Create(context.Background(), "sbox", api.CreateNodeRequest{}, CreateOptions{Wait: WaitAgent, Timeout: time.Minute})
		errc <- err
	}()
	for {
		if nodes, _ := e.m.List(Filter{}); len(nodes) == 1 && len(e.fake.Running()) == 1 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := e.m.Delete(context.Background(), "sbox", "sbox-1"); err != nil {
		t.Fatalf("Delete during create: %v", err)
	}
	if err := <-errc; err == nil {
		t.Fatal("create of a deleted vm succeeded")
	}
	e.assertEmpty(t)
}

func TestReaperRemovesExitedEphemeralVM(t *testing.T) {
	e := newEnv(t, &hypervisortest.Fake{})
	if _, err := e.m.Create(context.Background(), "sbox", api.CreateNodeRequest{}, CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.fake.Running()[0].Exit() // the guest powers off
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if nodes, _ := e.m.List(Filter{}); len(nodes) == 0 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	e.assertEmpty(t)
}

func TestParallelCreatesGetDistinctNames(t *testing.T) {
	e := newEnv(t, &hypervisortest.Fake{})
	var wg sync.WaitGroup
	names := make(chan string, 20)
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := e.m.Create(context.Background(), "sbox", api.CreateNodeRequest{}, CreateOptions{})
			if err != nil {
				t.Errorf("Create: %v", err)
				return
			}
			names <- resp.Hostname
		}()
	}
	wg.Wait()
	close(names)
	seen := map[string]bool{}
	for n := range names {
		if seen[n] {
			t.Errorf("name %s given twice", n)
		}
		seen[n] = true
	}
	for i := 1; i <= 20; i++ {
		if !seen[fmt.Sprintf("sbox-%d", i)] {
			t.Errorf("sbox-%d not allocated", i)
		}
	}
}

func TestCloseRemovesEphemeral(t *testing.T) {
	e := newEnv(t, &hypervisortest.Fake{})
	for range 3 {
		if _, err := e.m.Create(context.Background(), "sbox", api.CreateNodeRequest{}, CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.m.Close(context.Background(), StopShutDown); err != nil {
		t.Fatal(err)
	}
	e.assertEmpty(t)
}

func TestTailLines(t *testing.T) {
	data := []byte("a\nb\nc\n")
	for _, tc := range []struct {
		n    int
		want string
	}{{0, "a\nb\nc\n"}, {1, "c\n"}, {2, "b\nc\n"}, {5, "a\nb\nc\n"}} {
		if got := string(tailLines(data, tc.n)); got != tc.want {
			t.Errorf("tailLines(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
}

func TestCountVMsAreProtectedAndRelaunched(t *testing.T) {
	e := newEnv(t, &hypervisortest.Fake{})
	two := 2
	e.m.opt.Config.HostGroups[0].Count = &two
	ctx := context.Background()
	if err := e.m.EnsureCount(ctx); err != nil {
		t.Fatal(err)
	}
	nodes, _ := e.m.List(Filter{})
	if len(nodes) != 2 || !nodes[0].Persistent {
		t.Fatalf("after EnsureCount: %+v, want 2 persistent vms", nodes)
	}
	if _, err := e.m.Delete(ctx, "sbox", "sbox-1"); !errors.Is(err, api.ErrForbidden) {
		t.Fatalf("Delete of a count vm = %v, want ErrForbidden", err)
	}
	// A count VM whose guest stops is kept, stopped, and relaunched at the
	// next EnsureCount (the next daemon start).
	for _, m := range e.fake.Running() {
		if m.Spec.Name == "sbox-2" {
			m.Exit()
		}
	}
	waitFor(t, func() bool { n, _ := e.m.List(Filter{}); return len(n) == 2 && n[1].Status == api.StatusStopped })
	if err := e.m.EnsureCount(ctx); err != nil {
		t.Fatal(err)
	}
	if n, _ := e.m.List(Filter{}); len(n) != 2 || n[1].Status != api.StatusRunning {
		t.Fatalf("after second EnsureCount: %+v, want both running", n)
	}
}

func TestPersistentStopAndRelaunch(t *testing.T) {
	e := newEnv(t, &hypervisortest.Fake{})
	ctx := context.Background()
	if _, err := e.m.Create(ctx, "sbox", api.CreateNodeRequest{Persistent: true}, CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.Relaunch(ctx, "sbox-1", CreateOptions{}); !errors.Is(err, api.ErrConflict) {
		t.Fatalf("Relaunch of a running vm = %v, want ErrConflict", err)
	}
	e.fake.Running()[0].Exit()
	waitFor(t, func() bool { n, _ := e.m.List(Filter{}); return len(n) == 1 && n[0].Status == api.StatusStopped })
	if _, err := os.Stat(filepath.Join(e.dir, "disks", "sbox-1.img")); err != nil {
		t.Fatalf("stopped persistent vm lost its disk: %v", err)
	}
	if _, err := e.m.Exec(ctx, "sbox-1", &api.ExecRequest{Command: "true"}, nil); !errors.Is(err, api.ErrConflict) {
		t.Fatalf("Exec on a stopped vm = %v, want ErrConflict", err)
	}
	if _, err := e.m.Relaunch(ctx, "sbox-1", CreateOptions{}); err != nil {
		t.Fatalf("Relaunch: %v", err)
	}
	if len(e.fake.Running()) != 1 {
		t.Fatal("relaunch did not start a machine")
	}
	if _, err := e.m.Delete(ctx, "sbox", "sbox-1"); err != nil {
		t.Fatal(err)
	}
	e.assertEmpty(t)
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestSuspendRestore(t *testing.T) {
	e := newEnv(t, &hypervisortest.Fake{})
	ctx := context.Background()
	if _, err := e.m.Create(ctx, "sbox", api.CreateNodeRequest{}, CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := e.m.Restore(ctx, "sbox-1", CreateOptions{}); !errors.Is(err, api.ErrConflict) {
		t.Fatalf("Restore of a running vm = %v, want ErrConflict", err)
	}
	if err := e.m.Suspend(ctx, "sbox-1"); err != nil {
		t.Fatalf("Suspend: %v", err)
	}
	// The machine's exit is a suspend: the ephemeral VM is not reaped.
	time.Sleep(50 * time.Millisecond)
	nodes, _ := e.m.List(Filter{})
	if len(nodes) != 1 || nodes[0].Status != api.StatusPaused || nodes[0].State != api.StateSuspended || len(e.fake.Running()) != 0 {
		t.Fatalf("after Suspend: %+v, %d machines running", nodes, len(e.fake.Running()))
	}
	if _, err := e.m.Exec(ctx, "sbox-1", &api.ExecRequest{Command: "true"}, nil); !errors.Is(err, api.ErrConflict) {
		t.Fatalf("Exec while suspended = %v, want ErrConflict", err)
	}
	if err := e.m.Restore(ctx, "sbox-1", CreateOptions{}); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if r := e.fake.Running(); len(r) != 1 || r[0].Spec.RestoreFrom == "" {
		t.Fatalf("Restore did not start a machine from the state file")
	}
	if _, err := os.Stat(filepath.Join(e.dir, "disks", "sbox-1.state")); !os.IsNotExist(err) {
		t.Errorf("state file kept after restore: %v", err)
	}
	if _, err := e.m.Delete(ctx, "sbox", "sbox-1"); err != nil {
		t.Fatal(err)
	}
	e.assertEmpty(t)
}

func TestSuspendUnsupported(t *testing.T) {
	e := newEnv(t, &hypervisortest.Fake{SuspendErr: hypervisor.ErrUnsupported})
	ctx := context.Background()
	if _, err := e.m.Create(ctx, "sbox", api.CreateNodeRequest{}, CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := e.m.Suspend(ctx, "sbox-1"); !errors.Is(err, api.ErrNotImplemented) {
		t.Fatalf("Suspend on a backend that cannot = %v, want ErrNotImplemented", err)
	}
	if n, _ := e.m.List(Filter{}); n[0].Status != api.StatusRunning {
		t.Fatalf("after a failed suspend the vm is %s, want Running", n[0].Status)
	}
}

// A suspended VM lists as Paused, the status Slicer's clients know, and a
// resume (what such a client does with a Paused VM) restores it.
func TestResumeRestoresSuspendedVM(t *testing.T) {
	e := newEnv(t, &hypervisortest.Fake{})
	ctx := context.Background()
	if _, err := e.m.Create(ctx, "sbox", api.CreateNodeRequest{Persistent: true}, CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := e.m.Suspend(ctx, "sbox-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.Relaunch(ctx, "sbox-1", CreateOptions{}); !errors.Is(err, api.ErrConflict) {
		t.Errorf("Relaunch of a suspended vm = %v, want ErrConflict", err)
	}
	if err := e.m.Resume(ctx, "sbox-1"); err != nil {
		t.Fatalf("Resume of a suspended vm: %v", err)
	}
	if r := e.fake.Running(); len(r) != 1 || r[0].Spec.RestoreFrom == "" {
		t.Fatal("Resume did not restore the machine from its state file")
	}
	n, _ := e.m.List(Filter{})
	if n[0].Status != api.StatusRunning || n[0].State != api.StateRunning {
		t.Fatalf("after Resume: %+v", n[0])
	}
}
