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
	"github.com/openslicer/openslicer/internal/hypervisor"
	"github.com/openslicer/openslicer/internal/hypervisor/hypervisortest"
	"github.com/openslicer/openslicer/internal/store"
)

// TestCheckCapture: a memory commit is refused, naming why, for a VM
// with a raw disk, or a disk an earlier memory commit moved,
// and for a backend that cannot capture.
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
		{"moved disk", store.VM{Hostname: "sbox-1", DiskFormat: "qcow2", LiveDisk: "/d/sbox-1.img"}, api.ErrConflict, "stop and start"},
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
// or the source live; the source cannot be suspended or memory-committed
// again until its machine restarts; a fork asking for another size is
// refused.
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
	if after.Disk != c.SourceOverlay || after.DiskFormat != "qcow2" || after.DiskBase != c.ID || after.LiveDisk != before.Disk {
		t.Errorf("source record after the commit: disk %q base %q live %q, want %q over %s, live %q",
			after.Disk, after.DiskBase, after.LiveDisk, c.SourceOverlay, c.ID, before.Disk)
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
	conflictNaming(t, "suspend of the moved source", e.m.Suspend(ctx, src), "memory commit")
	_, err = e.m.Commit(ctx, src, api.CommitVMRequest{Mode: api.CommitModeMemory})
	conflictNaming(t, "second memory commit before a restart", err, "stop and start")
	if d, _ := e.m.Describe(src); d.Status != api.StatusRunning {
		t.Errorf("source status %q after the refusals, want running", d.Status)
	}

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
	if rec := e.record(t, before); rec.Disk != cb.SourceDisk || rec.LiveDisk != "" {
		t.Errorf("source of the commit cut before the move: disk %q live %q, want its own", rec.Disk, rec.LiveDisk)
	}
	if _, err := os.Stat(cb.SourceDisk); err != nil {
		t.Errorf("disk of the source of the commit cut before the move: %v", err)
	}
	c, err := e.store.GetCommit(cm.ID)
	if err != nil || c.State != store.CommitReady || c.Mode != api.CommitModeDisk || c.StateDir != "" || c.Layer != cm.SourceDisk {
		t.Errorf("commit cut after the move: %+v, %v; want a ready disk commit over the old disk", c, err)
	}
	if rec := e.record(t, moved); rec.Disk != cm.SourceOverlay || rec.DiskBase != cm.ID || rec.LiveDisk != cm.SourceDisk {
		t.Errorf("source of the commit cut after the move: disk %q base %q live %q", rec.Disk, rec.DiskBase, rec.LiveDisk)
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
