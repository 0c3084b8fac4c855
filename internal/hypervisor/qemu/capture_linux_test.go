package qemu

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/openslicer/openslicer/internal/hypervisor"
	"github.com/openslicer/openslicer/internal/hypervisor/hypervisortest/agentguest"
)

// TestCaptureLayers: a running machine with a qcow2 disk captured with an
// overlay keeps running, writing to the overlay (a qcow2 file over the
// disk, named by its absolute path), its disk file now read-only; a
// clone restored from the state, over its own overlay of that layer,
// holds the value the source kept in memory at the capture.
func TestCaptureLayers(t *testing.T) { testCaptureLayers(t, false) }

// TestCaptureSharedMemory is TestCaptureLayers for a machine whose RAM is
// a shared memfd (Spec.SharedMemory): its memory is copied into the state
// as a file, beside a stream of devices only, which the clone maps
// privately; what the source writes after the capture is not the clone's.
func TestCaptureSharedMemory(t *testing.T) { testCaptureLayers(t, true) }

func testCaptureLayers(t *testing.T, sharedMemory bool) {
	requireQEMU(t)
	guest := agentguest.FromEnv(t)
	guest.Log = testLogger(t)
	spec := guest.Spec(t)
	spec.SharedMemory = sharedMemory
	qcow := filepath.Join(t.TempDir(), "disk.qcow2")
	qemuImg(t, "create", "-q", "-f", "qcow2", "-b", spec.Disks[0].Path, "-F", "raw", qcow)
	spec.Disks = []hypervisor.Disk{{Path: qcow, Format: "qcow2"}}
	b := New(testLogger(t))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	m, err := b.Start(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Kill(context.Background())
	sess, err := guest.Connect(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.Put(ctx, "mark", "captured"); err != nil {
		t.Fatal(err)
	}
	layer, overlay := qcow, filepath.Join(t.TempDir(), "overlay.qcow2")
	state := filepath.Join(t.TempDir(), "state")
	if err := m.(hypervisor.Capturer).Capture(ctx, state, hypervisor.CaptureOptions{Resume: true, Overlays: []string{overlay}}); err != nil {
		t.Fatal(err)
	}
	sess.Close()
	if sess, err = guest.Connect(ctx, m); err != nil {
		t.Fatalf("the source after its capture: %v", err)
	}
	if v, err := sess.Get(ctx, "mark"); err != nil || v != "captured" {
		t.Errorf("the source after its capture keeps (%q, %v)", v, err)
	}
	if err := sess.Put(ctx, "mark", "after"); err != nil {
		t.Errorf("the source after its capture: %v", err)
	}
	sess.Close()
	man, err := hypervisor.ReadManifest(state)
	if err != nil {
		t.Fatal(err)
	}
	if mem, _ := man.File(hypervisor.HoldsMemory); sharedMemory != (man.Format == sharedMemoryFormat && mem == memoryFile) {
		t.Errorf("manifest format %q, memory in %q: want a memory file %t", man.Format, mem, sharedMemory)
	}
	if fi, err := os.Stat(layer); err != nil || fi.Mode().Perm()&0o222 != 0 {
		t.Errorf("layer: %v, mode %v; want a read-only file", err, fi)
	}
	if got := backingFile(t, overlay); got != layer {
		t.Errorf("the source's overlay is over %q, want the layer %s", got, layer)
	}

	clone := guest.Spec(t)
	cdisk := filepath.Join(t.TempDir(), "clone.qcow2")
	qemuImg(t, "create", "-q", "-f", "qcow2", "-b", layer, "-F", "qcow2", cdisk)
	clone.Disks = []hypervisor.Disk{{Path: cdisk, Format: "qcow2"}}
	clone.RestoreFrom, clone.SharedMemory = state, sharedMemory
	cm, err := b.Start(ctx, clone)
	if err != nil {
		t.Fatal(err)
	}
	defer cm.Kill(context.Background())
	csess, err := guest.Connect(ctx, cm)
	if err != nil {
		t.Fatal(err)
	}
	defer csess.Close()
	if v, err := csess.Get(ctx, "mark"); err != nil || v != "captured" {
		t.Errorf("the clone keeps (%q, %v), want the source's value", v, err)
	}
}

func qemuImg(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("qemu-img", args...).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img %v: %v: %s", args, err, out)
	}
}

// backingFile is the backing file a qcow2 image names.
func backingFile(t *testing.T, img string) string {
	t.Helper()
	out, err := exec.Command("qemu-img", "info", "-U", "--output=json", img).Output()
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		Backing string `json:"backing-filename"`
	}
	if err := json.Unmarshal(out, &info); err != nil {
		t.Fatal(err)
	}
	return info.Backing
}

// TestCheckOverlays: overlays are one per disk, absolute, and only for
// writable qcow2 disks; none is fine.
func TestCheckOverlays(t *testing.T) {
	disks := []hypervisor.Disk{{Path: "/d/a.qcow2", Format: "qcow2"}, {Path: "/d/seed.img", Format: "raw", ReadOnly: true}}
	for _, tt := range []struct {
		overlays []string
		ok       bool
	}{
		{nil, true},
		{[]string{"/d/a.next", ""}, true},
		{[]string{"/d/a.next"}, false},
		{[]string{"rel.next", ""}, false},
		{[]string{"", "/d/seed.next"}, false},
	} {
		if err := checkOverlays(disks, tt.overlays); (err == nil) != tt.ok {
			t.Errorf("checkOverlays(%q) = %v, want ok %v", tt.overlays, err, tt.ok)
		}
	}
	if err := checkOverlays([]hypervisor.Disk{{Path: "/d/r.img", Format: "raw"}}, []string{"/d/r.next"}); err == nil {
		t.Error("a raw disk was accepted for an overlay")
	}
}

// TestLayeredTwiceThenSuspend: a machine captured with an overlay, then
// re-attached (its command line read from /proc, still naming the first
// disk) and captured again, is layered a second time over the first
// overlay, which becomes read-only; each capture's manifest names the
// disk the machine wrote just before it (the previous layer), and a
// suspend after both names the newest overlay, from which the machine is
// restored with its memory.
func TestLayeredTwiceThenSuspend(t *testing.T) {
	requireQEMU(t)
	guest := agentguest.FromEnv(t)
	guest.Log = testLogger(t)
	spec := guest.Spec(t)
	dir := t.TempDir()
	disk := filepath.Join(dir, "disk.qcow2")
	qemuImg(t, "create", "-q", "-f", "qcow2", "-b", spec.Disks[0].Path, "-F", "raw", disk)
	spec.Disks = []hypervisor.Disk{{Path: disk, Format: "qcow2"}}
	b := New(testLogger(t))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	started, err := b.Start(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	defer started.Kill(context.Background())
	sess, err := guest.Connect(ctx, started)
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.Put(ctx, "mark", "layered twice"); err != nil {
		t.Fatal(err)
	}
	sess.Close()
	first, second := filepath.Join(dir, "first.qcow2"), filepath.Join(dir, "second.qcow2")
	capture := func(m hypervisor.Machine, overlay string) hypervisor.Manifest {
		t.Helper()
		state := filepath.Join(t.TempDir(), "state")
		if err := m.(hypervisor.Capturer).Capture(ctx, state, hypervisor.CaptureOptions{Resume: true, Overlays: []string{overlay}}); err != nil {
			t.Fatal(err)
		}
		man, err := hypervisor.ReadManifest(state)
		if err != nil {
			t.Fatal(err)
		}
		return man
	}
	if man := capture(started, first); man.Machine.Disks[0].Path != disk {
		t.Errorf("first capture's manifest names %q, want %s", man.Machine.Disks[0].Path, disk)
	}
	attached, err := New(testLogger(t)).Attach(ctx, started.Handle())
	if err != nil {
		t.Fatal(err)
	}
	if man := capture(attached, second); man.Machine.Disks[0].Path != first {
		t.Errorf("second capture's manifest names %q, want the first overlay %s", man.Machine.Disks[0].Path, first)
	}
	if got := backingFile(t, second); got != first {
		t.Errorf("the second overlay is over %q, want %s", got, first)
	}
	for _, layer := range []string{disk, first} {
		if fi, err := os.Stat(layer); err != nil || fi.Mode().Perm()&0o222 != 0 {
			t.Errorf("layer %s: %v, mode %v; want a read-only file", layer, err, fi)
		}
	}

	state := filepath.Join(t.TempDir(), "suspended")
	if err := attached.Suspend(ctx, state); err != nil {
		t.Fatal(err)
	}
	<-started.Done()
	man, err := hypervisor.ReadManifest(state)
	if err != nil {
		t.Fatal(err)
	}
	if got := man.Machine.Disks[0]; got.Path != second || got.Format != "qcow2" {
		t.Errorf("suspend's manifest names disk %+v, want the second overlay %s", got, second)
	}
	restore := spec
	restore.Disks = []hypervisor.Disk{{Path: second, Format: "qcow2"}}
	restore.RestoreFrom = state
	rm, err := b.Start(ctx, restore)
	if err != nil {
		t.Fatal(err)
	}
	defer rm.Kill(context.Background())
	rsess, err := guest.Connect(ctx, rm)
	if err != nil {
		t.Fatal(err)
	}
	defer rsess.Close()
	if v, err := rsess.Get(ctx, "mark"); err != nil || v != "layered twice" {
		t.Errorf("restored machine keeps (%q, %v)", v, err)
	}
}
