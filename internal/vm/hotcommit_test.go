package vm

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/agent"
	"github.com/openslicer/openslicer/internal/config"
	"github.com/openslicer/openslicer/internal/hypervisor"
	"github.com/openslicer/openslicer/internal/hypervisor/hypervisortest"
	"github.com/openslicer/openslicer/internal/store"
)

// TestCheckCapture: a memory commit is refused, naming why, for a VM
// with a raw disk, and for a backend that cannot capture; a VM an
// earlier memory commit moved onto an overlay may be committed.
func TestCheckCapture(t *testing.T) {
	fake := &hypervisortest.Fake{}
	m, err := fake.Start(context.Background(), testSpec(t))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Kill(context.Background())
	ok := store.VM{Hostname: "sbox-1", DiskFormat: "qcow2"}
	for _, tc := range []struct {
		name  string
		rec   store.VM
		class error
		word  string
	}{
		{"qcow2", ok, nil, ""},
		{"raw disk", store.VM{Hostname: "sbox-1"}, api.ErrConflict, "qcow2"},
		{"moved disk", store.VM{Hostname: "sbox-1", DiskFormat: "qcow2", Disk: "/d/sbox-1.cmt-1.qcow2", DiskBase: "cmt-1"}, nil, ""},
	} {
		err := checkCapture(tc.rec, m)
		if tc.class == nil {
			if err != nil {
				t.Errorf("%s: %v, want allowed", tc.name, err)
			}
			continue
		}
		if !errors.Is(err, tc.class) || !strings.Contains(err.Error(), tc.word) {
			t.Errorf("%s: %v, want %v naming %q", tc.name, err, tc.class, tc.word)
		}
	}
}

// testSpec is a minimal machine spec in a temporary run directory.
func testSpec(t *testing.T) hypervisor.Spec {
	dir := t.TempDir()
	kernel := filepath.Join(dir, "vmlinuz")
	os.WriteFile(kernel, []byte("kernel"), 0o644)
	return hypervisor.Spec{ID: dir, Name: "m", VCPUs: 1, MemoryBytes: 64 << 20, RunDir: dir, Kernel: kernel}
}

// TestMemoryCommitAndHotFork: a memory commit of a running VM captures it
// while it keeps running (same machine, not restarted), records the commit
// ready in mode memory with its state and the VM's old disk as its layer,
// and moves the VM's record onto the overlay. Two forks restore the state
// over their own disks and each gets its own hostname, machine-id and
// entropy before it is answered. The commit cannot be deleted while they
// or the source live; a fork asking for another size is refused
// (TestMemoryCommitTwiceThenSuspend goes on with the source).
func TestMemoryCommitAndHotFork(t *testing.T) {
	e, _, guests := newCommitEnv(t, nil, nil)
	e.m.opt.Clone = qcow2Clone
	ctx := context.Background()
	src := mustCreate(t, e.m, api.CreateNodeRequest{Tags: []string{"role=api"}})
	before := e.record(t, src)
	machine := e.fake.Last(src)

	if _, err := e.m.Commit(ctx, src, api.CommitVMRequest{Mode: "bogus"}); !errors.Is(err, api.ErrInvalid) {
		t.Errorf("commit with mode bogus = %v, want ErrInvalid", err)
	}
	resp, err := e.m.Commit(ctx, src, api.CommitVMRequest{Mode: api.CommitModeMemory, Tags: []string{"hot"}})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Mode != api.CommitModeMemory || resp.ParentStatus != api.StateRunning || resp.Hostname != src {
		t.Errorf("commit response %+v", resp)
	}
	c, err := e.store.GetCommit(resp.CommitID)
	if err != nil || c.State != store.CommitReady || c.Mode != api.CommitModeMemory || c.Layer != before.Disk ||
		c.StateDir != filepath.Join(e.dir, "commits", c.ID, "state") || c.CPUs != before.CPUs {
		t.Fatalf("commit record %+v, %v", c, err)
	}
	if _, err := os.Stat(filepath.Join(c.StateDir, "manifest.json")); err != nil {
		t.Errorf("captured state: %v", err)
	}
	after := e.record(t, src)
	if after.Disk != c.SourceOverlay || after.DiskFormat != "qcow2" || after.DiskBase != c.ID {
		t.Errorf("source record after the commit: disk %q base %q, want %q over %s",
			after.Disk, after.DiskBase, c.SourceOverlay, c.ID)
	}
	if e.fake.Last(src) != machine || !isRunning(e, src) {
		t.Errorf("the source's machine was replaced or stopped by the commit")
	}
	if d, _ := e.m.Describe(src); d.Status != api.StatusRunning {
		t.Errorf("source status %q after the commit, want running", d.Status)
	}
	if got, _ := e.m.ListCommits(CommitFilter{Mode: api.CommitModeMemory}); len(got) != 1 || got[0].CommitID != c.ID {
		t.Errorf("memory commits listed: %+v", got)
	}

	var children []string
	for range 2 {
		f, err := e.m.Fork(ctx, c.ID, api.ForkVMRequest{}, ForkOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if f.Mode != api.CommitModeMemory || f.ChildStatus != api.ChildStatusRunning {
			t.Errorf("fork response %+v", f)
		}
		children = append(children, f.Hostname)
		m := e.fake.Last(f.Hostname)
		if m == nil || m.Spec.RestoreFrom != c.StateDir {
			t.Errorf("%s: machine %+v, want it restored from %s", f.Hostname, m, c.StateDir)
		}
		rec := e.record(t, f.Hostname)
		if disk, _ := os.ReadFile(rec.Disk); string(disk) != overlayContent(c.Layer) || rec.ParentCommit != c.ID {
			t.Errorf("%s: disk %q parent %q, want an overlay over %s", f.Hostname, disk, rec.ParentCommit, c.Layer)
		}
	}
	ids := guests.identityList()
	if len(ids) != 2 || ids[0].Hostname != children[0] || ids[1].Hostname != children[1] ||
		ids[0].MachineID == "" || ids[0].MachineID == ids[1].MachineID ||
		len(ids[0].Entropy) < agent.MinEntropy || bytes.Equal(ids[0].Entropy, ids[1].Entropy) {
		t.Errorf("identities given: %+v, want each child its own name, machine-id and entropy", ids)
	}
	for _, x := range guests.execList() {
		if strings.Contains(x, "/etc/hosts") {
			t.Errorf("a hot fork ran the hostname fix-up script (the identity route does it): %q", x)
		}
	}

	_, err = e.m.Fork(ctx, c.ID, api.ForkVMRequest{VCPU: 1}, ForkOptions{})
	if !errors.Is(err, api.ErrInvalid) || !strings.Contains(err.Error(), "memory commit") {
		t.Errorf("fork with another vcpu = %v, want ErrInvalid", err)
	}
	err = e.m.DeleteCommit(ctx, c.ID)
	conflictNaming(t, "delete of a commit with children", err, src, children[0], children[1])

	for _, h := range append(children, src) {
		if _, err := e.m.Delete(ctx, "sbox", h); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.m.DeleteCommit(ctx, c.ID); err != nil {
		t.Fatalf("delete of the commit once unused: %v", err)
	}
	if _, err := os.Stat(c.Layer); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("layer %s after the delete: %v, want it gone", c.Layer, err)
	}
	if d := e.commitDirs(); len(d) != 0 {
		t.Errorf("commit directories left: %v", d)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "disks")); err != nil {
		t.Errorf("the disks directory went with the commit: %v", err)
	}
}

// TestMemoryCommitOfStoppedVM: a memory commit needs a running VM.
func TestMemoryCommitOfStoppedVM(t *testing.T) {
	e, _, _ := newCommitEnv(t, nil, nil)
	e.m.opt.Clone = qcow2Clone
	src := e.stoppedVM(t, "sbox", api.CreateNodeRequest{})
	_, err := e.m.Commit(context.Background(), src, api.CommitVMRequest{Mode: api.CommitModeMemory})
	conflictNaming(t, "memory commit of a stopped vm", err, "running")
	if cs, _ := e.store.ListCommits(); len(cs) != 0 || len(e.commitDirs()) != 0 {
		t.Errorf("refused commit left %+v, %v", cs, e.commitDirs())
	}
}

// TestRecoverMemoryCommit: a memory commit cut short before the source's
// disk moved is removed (state and record); one cut short after it moved
// is kept as a disk commit over the old disk, without state, and the
// source's record follows its machine onto the overlay; a source the
// capture left paused runs again.
func TestRecoverMemoryCommit(t *testing.T) {
	e, _, _ := newCommitEnv(t, nil, nil)
	e.m.opt.Clone = qcow2Clone
	before, moved := mustCreate(t, e.m, api.CreateNodeRequest{Persistent: true}), mustCreate(t, e.m, api.CreateNodeRequest{Persistent: true})
	half := func(id, host string) store.Commit {
		rec := e.record(t, host)
		c := store.Commit{ID: id, State: store.CommitWriting, Mode: api.CommitModeMemory, Source: host, Group: "sbox",
			Layer: rec.Disk, LayerFormat: "qcow2", SourceDisk: rec.Disk, SourceFormat: "qcow2",
			StateDir: filepath.Join(e.dir, "commits", id, "state"), SourceOverlay: e.m.hotOverlayPath(host, id)}
		if err := e.store.CreateCommit(c); err != nil {
			t.Fatal(err)
		}
		os.MkdirAll(filepath.Join(c.StateDir+".tmp"), 0o755) // a capture under way
		return c
	}
	cb, cm := half("cmt-before", before), half("cmt-moved", moved)
	os.WriteFile(cm.SourceOverlay, []byte(overlayContent(cm.Layer)), 0o644)
	// The capture had stopped the vCPUs when the daemon died.
	machine := e.fake.Last(moved)
	machine.Pause(context.Background())

	e.next(t)
	if machine.Paused() {
		t.Error("the source of a capture cut short is still paused after recovery")
	}
	if _, err := e.store.GetCommit(cb.ID); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("commit cut before the move: %v, want it gone", err)
	}
	if rec := e.record(t, before); rec.Disk != cb.SourceDisk || rec.DiskBase != "" {
		t.Errorf("source of the commit cut before the move: disk %q base %q, want its own", rec.Disk, rec.DiskBase)
	}
	if _, err := os.Stat(cb.SourceDisk); err != nil {
		t.Errorf("disk of the source of the commit cut before the move: %v", err)
	}
	c, err := e.store.GetCommit(cm.ID)
	if err != nil || c.State != store.CommitReady || c.Mode != api.CommitModeDisk || c.StateDir != "" || c.Layer != cm.SourceDisk {
		t.Errorf("commit cut after the move: %+v, %v; want a ready disk commit over the old disk", c, err)
	}
	if rec := e.record(t, moved); rec.Disk != cm.SourceOverlay || rec.DiskBase != cm.ID {
		t.Errorf("source of the commit cut after the move: disk %q base %q", rec.Disk, rec.DiskBase)
	}
	if d := e.commitDirs(); len(d) != 0 {
		t.Errorf("commit directories after recovery: %v, want none (no state is kept)", d)
	}
}

// TestHotForkWithNetwork: a VM with a network is memory-committed; each
// fork gets a TAP, MAC and address of its own, and the identity route
// hands the restored guest that MAC, address and route. A fork whose
// group no longer matches the captured machine's network card is
// refused.
func TestHotForkWithNetwork(t *testing.T) {
	e, _, guests := newCommitEnv(t, netGroups(), &fakeNetwork{})
	e.m.opt.Clone = qcow2Clone
	ctx := context.Background()
	src, err := e.m.Create(ctx, "br", api.CreateNodeRequest{}, CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := e.m.Commit(ctx, src.Hostname, api.CommitVMRequest{Mode: api.CommitModeMemory})
	if err != nil {
		t.Fatal(err)
	}
	if c, err := e.store.GetCommit(resp.CommitID); err != nil || !c.HasNetwork {
		t.Fatalf("commit %+v, %v: want it to record the captured network card", c, err)
	}
	srcMachine := e.fake.Last(src.Hostname)
	seen := map[string]string{srcMachine.Spec.TAP: src.Hostname, srcMachine.Spec.MAC: src.Hostname, e.record(t, src.Hostname).IP: src.Hostname}
	for range 2 {
		f, err := e.m.Fork(ctx, resp.CommitID, api.ForkVMRequest{}, ForkOptions{})
		if err != nil {
			t.Fatal(err)
		}
		m := e.fake.Last(f.Hostname)
		rec := e.record(t, f.Hostname)
		for _, v := range []string{m.Spec.TAP, m.Spec.MAC, rec.IP} {
			if v == "" || seen[v] != "" {
				t.Errorf("%s: TAP %q, MAC %q, IP %q: want each set and its own (%q is %s's)", f.Hostname, m.Spec.TAP, m.Spec.MAC, rec.IP, v, seen[v])
			}
			seen[v] = f.Hostname
		}
		ids := guests.identityList()
		id := ids[len(ids)-1]
		if id.Hostname != f.Hostname || id.Network == nil || id.Network.MAC != m.Spec.MAC ||
			id.Network.Address.String() != rec.IP || !id.Network.Gateway.IsValid() {
			t.Errorf("%s: identity %+v, want its own MAC %s, address %s and a gateway", f.Hostname, id.Network, m.Spec.MAC, rec.IP)
		}
	}

	g := e.m.groups["br"]
	g.Network = nil
	e.m.groups["br"] = g
	_, err = e.m.Fork(ctx, resp.CommitID, api.ForkVMRequest{}, ForkOptions{})
	conflictNaming(t, "fork into a group that lost its network", err, "has no network now")
}

// TestMemoryCommitTwiceThenSuspend: the source of a memory commit goes on
// like any running VM. A second memory commit is accepted and layers the
// first overlay: it becomes the second commit's layer (read-only, over
// the first commit's), and the source moves onto a new overlay; a fork of
// the second commit restores its state over that layer. The first commit
// cannot be deleted while the second is over it. The source can then be
// suspended (its state names the overlay its record names) and restored,
// with its memory, on the same disk.
func TestMemoryCommitTwiceThenSuspend(t *testing.T) {
	e, _, _ := newCommitEnv(t, nil, nil)
	e.m.opt.Clone = qcow2Clone
	ctx := context.Background()
	src := mustCreate(t, e.m, api.CreateNodeRequest{Persistent: true})
	first := e.record(t, src).Disk
	machine := e.fake.Last(src)
	machine.Store("proc", "alive")

	memoryCommit := func() store.Commit {
		t.Helper()
		resp, err := e.m.Commit(ctx, src, api.CommitVMRequest{Mode: api.CommitModeMemory})
		if err != nil {
			t.Fatal(err)
		}
		c, err := e.store.GetCommit(resp.CommitID)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	c1 := memoryCommit()
	c2 := memoryCommit()
	if c2.Layer != c1.SourceOverlay || c2.SourceDisk != c1.SourceOverlay || c2.Parent != c1.ID || c2.Mode != api.CommitModeMemory {
		t.Errorf("second commit: layer %q parent %q mode %q, want the first overlay %s over %s",
			c2.Layer, c2.Parent, c2.Mode, c1.SourceOverlay, c1.ID)
	}
	if c1.Layer != first || c2.SourceOverlay == c1.SourceOverlay {
		t.Errorf("layers %q then %q, overlays %q then %q", c1.Layer, c2.Layer, c1.SourceOverlay, c2.SourceOverlay)
	}
	for _, layer := range []string{c1.Layer, c2.Layer} {
		if fi, err := os.Stat(layer); err != nil || fi.Mode().Perm()&0o222 != 0 {
			t.Errorf("layer %s: %v, want a read-only file", layer, err)
		}
	}
	rec := e.record(t, src)
	if rec.Disk != c2.SourceOverlay || rec.DiskBase != c2.ID || rec.CommitID != c2.ID {
		t.Errorf("source record: disk %q base %q commit %q, want %s over %s", rec.Disk, rec.DiskBase, rec.CommitID, c2.SourceOverlay, c2.ID)
	}
	if e.fake.Last(src) != machine || !isRunning(e, src) {
		t.Fatal("the source's machine was replaced or stopped by the commits")
	}
	man, err := hypervisor.ReadManifest(c2.StateDir)
	if err != nil || man.Machine.Disks[0].Path != c2.Layer {
		t.Errorf("second commit's state names disk %+v (%v), want its layer %s", man.Machine.Disks, err, c2.Layer)
	}

	f, err := e.m.Fork(ctx, c2.ID, api.ForkVMRequest{}, ForkOptions{})
	if err != nil {
		t.Fatal(err)
	}
	child := e.fake.Last(f.Hostname)
	if v, _ := child.Load("proc"); child.Spec.RestoreFrom != c2.StateDir || v != "alive" {
		t.Errorf("fork of the second commit restored from %q with %q, want %s", child.Spec.RestoreFrom, v, c2.StateDir)
	}
	if disk, _ := os.ReadFile(e.record(t, f.Hostname).Disk); string(disk) != overlayContent(c2.Layer) {
		t.Errorf("fork's disk %q, want an overlay over %s", disk, c2.Layer)
	}
	conflictNaming(t, "delete of the first commit", e.m.DeleteCommit(ctx, c1.ID), "commit "+c2.ID)

	if err := e.m.Suspend(ctx, src); err != nil {
		t.Fatalf("suspend after two memory commits: %v", err)
	}
	man, err = hypervisor.ReadManifest(e.m.statePath(src))
	if err != nil || man.Machine.Disks[0].Path != c2.SourceOverlay {
		t.Errorf("suspended state names disk %+v (%v), want the overlay %s", man.Machine.Disks, err, c2.SourceOverlay)
	}
	if err := e.m.Restore(ctx, src, CreateOptions{}); err != nil {
		t.Fatalf("restore after two memory commits: %v", err)
	}
	restored := e.fake.Last(src)
	if v, _ := restored.Load("proc"); restored == machine || v != "alive" || restored.Spec.Disks[0].Path != c2.SourceOverlay {
		t.Errorf("restored machine: memory %q, disk %+v; want its memory back on %s", v, restored.Spec.Disks, c2.SourceOverlay)
	}

	for _, h := range []string{f.Hostname, src} {
		if _, err := e.m.Delete(ctx, "sbox", h); err != nil {
			t.Fatal(err)
		}
	}
	conflictNaming(t, "delete of the first commit under the second", e.m.DeleteCommit(ctx, c1.ID), "commit "+c2.ID)
	for _, c := range []store.Commit{c2, c1} {
		if err := e.m.DeleteCommit(ctx, c.ID); err != nil {
			t.Fatalf("delete of %s once unused: %v", c.ID, err)
		}
		if _, err := os.Stat(c.Layer); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("layer %s after the delete: %v, want it gone", c.Layer, err)
		}
	}
	if d := e.commitDirs(); len(d) != 0 {
		t.Errorf("commit directories left: %v", d)
	}
	if ents, err := os.ReadDir(e.m.opt.DisksDir); err != nil || len(ents) != 0 {
		t.Errorf("left in the disks directory: %v (%v)", ents, err)
	}
}

// TestRecoverSecondMemoryCommit: a second memory commit cut short after
// the source's disk moved again is kept as a disk commit whose layer is
// the first overlay, over the first commit, and the source's record
// follows its machine onto the second overlay; the first commit is left
// as it was.
func TestRecoverSecondMemoryCommit(t *testing.T) {
	e, _, _ := newCommitEnv(t, nil, nil)
	e.m.opt.Clone = qcow2Clone
	src := mustCreate(t, e.m, api.CreateNodeRequest{Persistent: true})
	resp, err := e.m.Commit(context.Background(), src, api.CommitVMRequest{Mode: api.CommitModeMemory})
	if err != nil {
		t.Fatal(err)
	}
	c1, _ := e.store.GetCommit(resp.CommitID)
	rec := e.record(t, src)
	id := "cmt-second"
	c2 := store.Commit{ID: id, State: store.CommitWriting, Mode: api.CommitModeMemory, Source: src, Group: "sbox",
		Layer: rec.Disk, LayerFormat: "qcow2", SourceDisk: rec.Disk, SourceFormat: "qcow2", Parent: rec.DiskBase,
		StateDir: filepath.Join(e.dir, "commits", id, "state"), SourceOverlay: e.m.hotOverlayPath(src, id)}
	if err := e.store.CreateCommit(c2); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(c2.StateDir+".tmp", 0o755)
	os.WriteFile(c2.SourceOverlay, []byte("over "+c2.Layer), 0o644)

	e.next(t)
	got, err := e.store.GetCommit(id)
	if err != nil || got.State != store.CommitReady || got.Mode != api.CommitModeDisk || got.Layer != c1.SourceOverlay || got.Parent != c1.ID {
		t.Errorf("second commit after recovery: %+v, %v; want a ready disk commit over the first overlay, child of %s", got, err, c1.ID)
	}
	if rec := e.record(t, src); rec.Disk != c2.SourceOverlay || rec.DiskBase != id {
		t.Errorf("source after recovery: disk %q base %q, want %s over %s", rec.Disk, rec.DiskBase, c2.SourceOverlay, id)
	}
	if got, err := e.store.GetCommit(c1.ID); err != nil || got.State != store.CommitReady || got.Mode != api.CommitModeMemory {
		t.Errorf("first commit after recovery: %+v, %v; want it unchanged", got, err)
	}
	if _, err := os.Stat(c1.StateDir); err != nil {
		t.Errorf("first commit's state after recovery: %v", err)
	}
}

// TestHotForkGroupSharedMemory: a group with hot_fork runs its VMs with
// shared memory (which a capture copies); another group does not.
func TestHotForkGroupSharedMemory(t *testing.T) {
	e, _, _ := newCommitEnv(t, []config.HostGroup{{Name: "hot", VCPU: 1, RamGB: 1, HotFork: true}, {Name: "sbox", VCPU: 1, RamGB: 1}}, nil)
	ctx := context.Background()
	for group, want := range map[string]bool{"hot": true, "sbox": false} {
		resp, err := e.m.Create(ctx, group, api.CreateNodeRequest{}, CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if m := e.fake.Last(resp.Hostname); m == nil || m.Spec.SharedMemory != want {
			t.Errorf("%s: machine %+v, want shared memory %t", resp.Hostname, m, want)
		}
	}
}
