package hypervisortest

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/hypervisor"
)

// testCapture checks the hypervisor.Capturer contract, when the
// backend's machines implement it:
//
//   - a running machine captured with Resume keeps running and keeps its
//     memory; what it writes afterwards does not reach the state; two
//     clones restored from the state, each with its own run dir and
//     disks, hold the memory of the capture and not each other's writes;
//   - a machine with a memory file refuses a capture with Resume, stays
//     paused after a capture without, and its clones too hold the
//     captured memory and keep their writes apart (the file is mapped
//     privately by each).
func testCapture(t *testing.T, newBackend func(t *testing.T) hypervisor.Backend, guest Guest) {
	b := newBackend(t)
	spec := guest.Spec(t)
	m := start(t, b, spec)
	c, ok := hypervisor.CanCapture(m)
	if !ok {
		m.Kill(context.Background())
		t.Skipf("backend %q machines cannot be captured", b.Name())
	}
	t.Run("Running", func(t *testing.T) {
		mark := randomWord(t)
		sess := connect(t, guest, m)
		step(t, "put a value in guest memory", func(ctx context.Context) error { return sess.Put(ctx, "mark", mark) })
		dir := filepath.Join(t.TempDir(), "captured")
		step(t, "capture with resume", func(ctx context.Context) error {
			return c.Capture(ctx, dir, hypervisor.CaptureOptions{Resume: true})
		})
		checkClonable(t, b.Name(), dir, spec)
		sess.Close()
		sess = connect(t, guest, m)
		wantValue(t, sess, mark, "in the source after a capture with resume")
		step(t, "change the source's value", func(ctx context.Context) error { return sess.Put(ctx, "mark", "after") })
		checkClones(t, b, guest, spec, dir, mark)
		step(t, "kill the source", m.Kill)
	})
	t.Run("MemoryFile", func(t *testing.T) {
		spec := guest.Spec(t)
		spec.MemoryFile = filepath.Join(t.TempDir(), "memory")
		m := start(t, b, spec)
		c, _ := hypervisor.CanCapture(m)
		mark := randomWord(t)
		sess := connect(t, guest, m)
		step(t, "put a value in guest memory", func(ctx context.Context) error { return sess.Put(ctx, "mark", mark) })
		dir := filepath.Join(t.TempDir(), "template")
		ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
		err := c.Capture(ctx, dir, hypervisor.CaptureOptions{Resume: true})
		cancel()
		if !errors.Is(err, api.ErrInvalid) {
			t.Errorf("capture with resume of a machine with a memory file: error = %v, want api.ErrInvalid", err)
		}
		sess.Close()
		step(t, "capture", func(ctx context.Context) error { return c.Capture(ctx, dir, hypervisor.CaptureOptions{}) })
		if !isOpen(m.Done()) {
			t.Fatal("the machine ended after a capture")
		}
		checkClonable(t, b.Name(), dir, spec)
		step(t, "kill the source", m.Kill)
		checkClones(t, b, guest, spec, dir, mark)
	})
}

// checkClonable checks the manifest of a captured state.
func checkClonable(t *testing.T, backend, dir string, spec hypervisor.Spec) {
	t.Helper()
	man, err := hypervisor.ReadManifest(dir)
	if err != nil {
		t.Fatalf("state directory after Capture: %v", err)
	}
	if !man.Clonable || man.Backend != backend {
		t.Errorf("manifest: clonable %v, backend %q; want clonable, %q", man.Clonable, man.Backend, backend)
	}
	for _, what := range []string{hypervisor.HoldsMemory, hypervisor.HoldsDevices} {
		if _, ok := man.File(what); !ok {
			t.Errorf("manifest names no file holding %s: %+v", what, man.Files)
		}
	}
	other := guest2(spec)
	if _, err := hypervisor.OpenState(dir, backend, man.Format, hypervisor.ShapeOf(other, man.Machine.Accelerator)); err != nil {
		t.Errorf("OpenState for a machine with other disks and MAC: %v", err)
	}
}

// guest2 is spec with other disk paths and MAC, as a clone has.
func guest2(spec hypervisor.Spec) hypervisor.Spec {
	spec.Disks = append([]hypervisor.Disk(nil), spec.Disks...)
	for i := range spec.Disks {
		spec.Disks[i].Path += ".clone"
	}
	if spec.MAC != "" {
		spec.MAC = "52:54:00:aa:bb:cc"
	}
	return spec
}

// checkClones restores two clones of the state dir, each from a new spec
// of guest (its own run dir and disks), and checks that both hold mark
// and that a write in one does not reach the other.
func checkClones(t *testing.T, b hypervisor.Backend, guest Guest, shape hypervisor.Spec, dir, mark string) {
	t.Helper()
	var sessions []GuestSession
	for range 2 {
		spec := guest.Spec(t)
		spec.VCPUs, spec.MemoryBytes, spec.RestoreFrom = shape.VCPUs, shape.MemoryBytes, dir
		m := start(t, b, spec)
		sess := connect(t, guest, m)
		wantValue(t, sess, mark, "in a clone")
		sessions = append(sessions, sess)
	}
	step(t, "write in the first clone", func(ctx context.Context) error { return sessions[0].Put(ctx, "mark", "first") })
	wantValue(t, sessions[1], mark, "in the second clone after the first wrote")
	wantValue(t, sessions[0], "first", "in the first clone after its write")
}
