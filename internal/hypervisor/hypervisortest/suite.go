package hypervisortest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/hypervisor"
)

// Bounds of the suite's waits. They are generous (a guest under TCG on a
// loaded host boots slowly) and only stop a stuck run: the suite asserts
// no speed.
const (
	// stepTimeout bounds one step: a boot until the agent answers, a
	// suspend, a restore, a power-off.
	stepTimeout = 3 * time.Minute
	// pausedWindow is how long a paused guest is given to answer, which
	// it must not.
	pausedWindow = 300 * time.Millisecond
)

// Run is the conformance suite every hypervisor.Backend must pass: it
// checks the contract written on hypervisor.Backend and hypervisor.Machine.
// newBackend returns a new Backend value at each call, as a daemon start
// makes one; values must share what outlives a daemon (the host's
// processes; for Fake, a Host), since the suite re-adopts a machine
// through a second value as a restarted daemon does. guest supplies the
// machines' boot files and speaks to their agent.
//
// It boots guest once and runs it through agent dial, pause and resume,
// attach from a second Backend value, suspend to a state directory
// (checking its manifest), refused restores, restore (a value kept in
// guest memory before the suspend is read back), and exit on the guest's
// power-off, then the operations on an ended machine; it starts two more
// machines without waiting for their guests, to kill one and reclaim
// the other; and it checks the error classes of what needs no machine. A
// backend that cannot suspend answers hypervisor.ErrUnsupported, and the
// suspend and restore checks are skipped. When the backend's machines are
// hypervisor.Capturers, it also captures a running machine (which keeps
// running) and a paused machine with a memory file, and restores two
// clones of each (testCapture). When Check fails, the suite is
// skipped with its reason.
func Run(t *testing.T, newBackend func(t *testing.T) hypervisor.Backend, guest Guest) {
	b := newBackend(t)
	if err := b.Check(); err != nil {
		t.Skipf("backend %q cannot run on this host: %v", b.Name(), err)
	}
	t.Run("Errors", func(t *testing.T) { testErrors(t, newBackend, guest) })
	t.Run("Lifecycle", func(t *testing.T) { testLifecycle(t, newBackend, guest) })
	t.Run("Kill", func(t *testing.T) { testKill(t, newBackend, guest) })
	t.Run("Reclaim", func(t *testing.T) { testReclaim(t, newBackend, guest) })
	t.Run("Capture", func(t *testing.T) { testCapture(t, newBackend, guest) })
}

// testErrors checks the error classes of operations that need no
// machine.
func testErrors(t *testing.T, newBackend func(t *testing.T) hypervisor.Backend, guest Guest) {
	ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
	defer cancel()
	b := newBackend(t)
	if b.Name() == "" {
		t.Error("Name() is empty")
	}
	spec := guest.Spec(t)

	bad := spec
	bad.VCPUs = 0
	if m, err := b.Start(ctx, bad); !errors.Is(err, api.ErrInvalid) {
		killIf(m)
		t.Errorf("Start with 0 vcpus error = %v, want api.ErrInvalid", err)
	}
	bad = spec
	bad.RunDir = "relative/run"
	if m, err := b.Start(ctx, bad); !errors.Is(err, api.ErrInvalid) {
		killIf(m)
		t.Errorf("Start with a relative run dir error = %v, want api.ErrInvalid", err)
	}

	nothing := hypervisor.Handle{Backend: b.Name(), RunDir: spec.RunDir}
	if m, err := b.Attach(ctx, nothing); !errors.Is(err, api.ErrNotFound) {
		killIf(m)
		t.Errorf("Attach to a run dir where nothing runs error = %v, want api.ErrNotFound", err)
	}
	other := hypervisor.Handle{Backend: "not-" + b.Name(), PID: 1, RunDir: spec.RunDir}
	if m, err := b.Attach(ctx, other); !errors.Is(err, api.ErrInvalid) {
		killIf(m)
		t.Errorf("Attach with another backend's handle error = %v, want api.ErrInvalid", err)
	}
	if err := b.Reclaim(ctx, spec.RunDir); err != nil {
		t.Errorf("Reclaim of a run dir where nothing runs: %v", err)
	}

	dir := t.TempDir()
	foreign := filepath.Join(dir, "foreign.state")
	writeForeignState(t, foreign, spec)
	empty := filepath.Join(dir, "empty.state")
	if err := os.Mkdir(empty, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, from string
		class      error
	}{
		{"missing state directory", filepath.Join(dir, "missing.state"), api.ErrNotFound},
		{"directory without manifest", empty, api.ErrInvalid},
		{"state of another backend", foreign, api.ErrConflict},
	} {
		restore := spec
		restore.RestoreFrom = tt.from
		m, err := b.Start(ctx, restore)
		if errors.Is(err, hypervisor.ErrUnsupported) {
			t.Logf("restore: %v", err)
			return
		}
		if !errors.Is(err, tt.class) {
			killIf(m)
			t.Errorf("restore from a %s: error = %v, want %v", tt.name, err, tt.class)
		}
	}
}

// writeForeignState writes a state directory for spec's machine that
// another backend saved.
func writeForeignState(t *testing.T, dir string, spec hypervisor.Spec) {
	t.Helper()
	w, err := hypervisor.CreateState(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(w.Path("memory"), []byte("not yours"), 0o600); err != nil {
		t.Fatal(err)
	}
	err = w.Commit(hypervisor.Manifest{
		Backend: "some-other-backend", Format: "other", Machine: hypervisor.ShapeOf(spec, "other"),
		Files: []hypervisor.StateFile{{Name: "memory", Holds: []string{hypervisor.HoldsMemory, hypervisor.HoldsDevices}}},
	})
	if err != nil {
		t.Fatal(err)
	}
}

// testLifecycle runs one guest from boot to power-off, through a suspend
// and restore.
func testLifecycle(t *testing.T, newBackend func(t *testing.T) hypervisor.Backend, guest Guest) {
	b := newBackend(t)
	spec := guest.Spec(t)
	mark := randomWord(t)

	m := start(t, b, spec)
	if h := m.Handle(); h.Backend != b.Name() || h.RunDir != spec.RunDir {
		t.Errorf("Handle() = %+v, want backend %q and run dir %s", h, b.Name(), spec.RunDir)
	}
	if !isOpen(m.Done()) {
		t.Fatal("Done closed right after Start")
	}
	if again, err := b.Start(context.Background(), spec); !errors.Is(err, api.ErrConflict) {
		killIf(again)
		t.Errorf("second Start in the same run dir error = %v, want api.ErrConflict", err)
	}

	sess := connect(t, guest, m)
	step(t, "put a value in guest memory", func(ctx context.Context) error { return sess.Put(ctx, "mark", mark) })
	checkPauseResume(t, m, sess, mark)

	// A restarted daemon re-adopts the machine from its handle.
	m2, err := newBackend(t).Attach(context.Background(), m.Handle())
	if err != nil {
		t.Fatalf("Attach from a second Backend value: %v", err)
	}
	if m2.Handle() != m.Handle() {
		t.Errorf("attached Handle() = %+v, want %+v", m2.Handle(), m.Handle())
	}
	sess.Close() // a backend may take one agent connection at a time
	sess = connect(t, guest, m2)
	wantValue(t, sess, mark, "through the attached machine")
	step(t, "pause the attached machine", m2.Pause)
	step(t, "resume the attached machine", m2.Resume)
	wantValue(t, sess, mark, "after pause and resume through the attached machine")

	// Suspend through the attached machine: its shape comes from what
	// the backend can learn of a machine it did not start.
	stateDir := filepath.Join(t.TempDir(), "vm.state")
	ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
	err = m2.Suspend(ctx, stateDir)
	cancel()
	if errors.Is(err, hypervisor.ErrUnsupported) {
		t.Logf("Suspend: %v: suspend and restore are not checked", err)
		powerOff(t, sess, m)
		checkEnded(t, newBackend(t), m, t.TempDir())
		return
	}
	if err != nil {
		t.Fatalf("Suspend: %v", err)
	}
	if isOpen(m2.Done()) {
		t.Error("Done of the suspended machine still open after Suspend returned")
	}
	waitDone(t, m, "the machine first started, after its attached self was suspended")
	checkManifest(t, b.Name(), stateDir, spec)
	ctx, cancel = context.WithTimeout(context.Background(), stepTimeout)
	if _, err := sess.Get(ctx, "mark"); err == nil {
		t.Error("an agent connection from before the suspend still answers")
	}
	cancel()
	sess.Close()
	checkRefusedRestores(t, b, spec, stateDir)

	restore := spec
	restore.RestoreFrom = stateDir
	m3 := start(t, b, restore)
	sess = connect(t, guest, m3)
	defer sess.Close()
	wantValue(t, sess, mark, "after suspend and restore")

	powerOff(t, sess, m3)
	checkEnded(t, newBackend(t), m3, t.TempDir())
}

// checkPauseResume: a paused guest answers nothing; once resumed it
// answers what it was asked meanwhile.
func checkPauseResume(t *testing.T, m hypervisor.Machine, sess GuestSession, mark string) {
	t.Helper()
	step(t, "pause", m.Pause)
	ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
	defer cancel()
	type result struct {
		v   string
		err error
	}
	got := make(chan result, 1)
	go func() {
		v, err := sess.Get(ctx, "mark")
		got <- result{v, err}
	}()
	select {
	case r := <-got:
		t.Fatalf("the paused guest answered (%q, %v)", r.v, r.err)
	case <-time.After(pausedWindow):
	}
	step(t, "resume", m.Resume)
	r := <-got
	if r.err != nil || r.v != mark {
		t.Fatalf("after resume the guest answered (%q, %v), want %q", r.v, r.err, mark)
	}
}

// checkManifest checks the state directory a suspend of spec's machine
// wrote.
func checkManifest(t *testing.T, backend, dir string, spec hypervisor.Spec) {
	t.Helper()
	man, err := hypervisor.ReadManifest(dir)
	if err != nil {
		t.Fatalf("state directory after Suspend: %v", err)
	}
	if man.Backend != backend || man.Version != hypervisor.StateVersion || man.Format == "" {
		t.Errorf("manifest names backend %q, version %d, format %q; want %q, %d and a format",
			man.Backend, man.Version, man.Format, backend, hypervisor.StateVersion)
	}
	for _, what := range []string{hypervisor.HoldsMemory, hypervisor.HoldsDevices} {
		if _, ok := man.File(what); !ok {
			t.Errorf("manifest names no file holding %s: %+v", what, man.Files)
		}
	}
	if man.Machine.Accelerator == "" {
		t.Error("manifest names no accelerator")
	}
	if diffs := man.Machine.Differences(hypervisor.ShapeOf(spec, man.Machine.Accelerator)); len(diffs) > 0 {
		t.Errorf("manifest's machine differs from the spec: %q", diffs)
	}
	if man.Machine.Kernel != spec.Kernel || man.Machine.Initrd != spec.Initrd {
		t.Errorf("manifest records kernel %q, initrd %q; want %q, %q", man.Machine.Kernel, man.Machine.Initrd, spec.Kernel, spec.Initrd)
	}
	if _, err := hypervisor.OpenState(dir, backend, man.Format, hypervisor.ShapeOf(spec, man.Machine.Accelerator)); err != nil {
		t.Errorf("OpenState: %v", err)
	}
}

// checkRefusedRestores: a restore as a machine of another shape is
// api.ErrConflict, and leaves nothing running (a later start in the same
// run dir works).
func checkRefusedRestores(t *testing.T, b hypervisor.Backend, spec hypervisor.Spec, dir string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
	defer cancel()
	for _, tt := range []struct {
		what string
		edit func(*hypervisor.Spec)
	}{
		{"twice the memory", func(s *hypervisor.Spec) { s.MemoryBytes *= 2 }},
		{"one more vcpu", func(s *hypervisor.Spec) { s.VCPUs++ }},
	} {
		restore := spec
		restore.RestoreFrom = dir
		tt.edit(&restore)
		m, err := b.Start(ctx, restore)
		if !errors.Is(err, api.ErrConflict) {
			killIf(m)
			t.Errorf("restore with %s: error = %v, want api.ErrConflict", tt.what, err)
		}
	}
}

// checkEnded checks the operations on a machine that has ended.
func checkEnded(t *testing.T, b hypervisor.Backend, m hypervisor.Machine, tmp string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
	defer cancel()
	ops := []struct {
		name string
		do   func() error
	}{
		{"DialAgent", func() error {
			c, err := m.DialAgent(ctx)
			if err == nil {
				c.Close()
			}
			return err
		}},
		{"Shutdown", func() error { return m.Shutdown(ctx) }},
		{"Pause", func() error { return m.Pause(ctx) }},
		{"Resume", func() error { return m.Resume(ctx) }},
		{"Suspend", func() error { return m.Suspend(ctx, filepath.Join(tmp, "ended.state")) }},
	}
	for _, op := range ops {
		if err := op.do(); !errors.Is(err, api.ErrConflict) {
			t.Errorf("%s on an ended machine: error = %v, want api.ErrConflict", op.name, err)
		}
	}
	if _, err := os.Stat(filepath.Join(tmp, "ended.state")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Suspend of an ended machine left a state directory (stat error %v)", err)
	}
	if err := m.Kill(ctx); err != nil {
		t.Errorf("Kill of an ended machine: %v", err)
	}
	if again, err := b.Attach(ctx, m.Handle()); !errors.Is(err, api.ErrNotFound) {
		killIf(again)
		t.Errorf("Attach to an ended machine: error = %v, want api.ErrNotFound", err)
	}
	if err := b.Reclaim(ctx, m.Handle().RunDir); err != nil {
		t.Errorf("Reclaim of an ended machine's run dir: %v", err)
	}
}

// testKill: a start cut short leaves nothing running; Kill ends a machine
// and returns once Done is closed; the power button ends a guest that
// honours it.
func testKill(t *testing.T, newBackend func(t *testing.T) hypervisor.Backend, guest Guest) {
	b := newBackend(t)
	spec := guest.Spec(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if m, err := b.Start(ctx, spec); err == nil {
		m.Kill(context.Background())
		t.Error("Start with an ended context succeeded")
	}

	m := start(t, b, spec) // nothing of the cut start is left in the run dir
	if guest.HonoursPowerButton() {
		step(t, "press the power button", m.Shutdown)
		waitDone(t, m, "after the power button")
		m = start(t, b, spec)
	} else if err := m.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	step(t, "kill", m.Kill)
	if isOpen(m.Done()) {
		t.Error("Done still open after Kill returned")
	}
	checkEnded(t, newBackend(t), m, t.TempDir())
}

// testReclaim: a restarted daemon's Reclaim kills the machine of a run
// dir, after which the run dir can be started again.
func testReclaim(t *testing.T, newBackend func(t *testing.T) hypervisor.Backend, guest Guest) {
	b := newBackend(t)
	spec := guest.Spec(t)
	m := start(t, b, spec)
	step(t, "reclaim from a second Backend value", func(ctx context.Context) error {
		return newBackend(t).Reclaim(ctx, spec.RunDir)
	})
	waitDone(t, m, "after Reclaim")
	m = start(t, b, spec)
	step(t, "kill", m.Kill)
}

// start starts spec, killing the machine when the test ends.
func start(t *testing.T, b hypervisor.Backend, spec hypervisor.Spec) hypervisor.Machine {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
	defer cancel()
	m, err := b.Start(ctx, spec)
	if err != nil {
		t.Fatalf("Start (restore from %q): %v", spec.RestoreFrom, err)
	}
	t.Cleanup(func() { m.Kill(context.Background()) })
	return m
}

func connect(t *testing.T, guest Guest, m hypervisor.Machine) GuestSession {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
	defer cancel()
	sess, err := guest.Connect(ctx, m)
	if err != nil {
		t.Fatalf("the guest agent did not answer: %v", err)
	}
	t.Cleanup(func() { sess.Close() })
	return sess
}

func wantValue(t *testing.T, sess GuestSession, want, when string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
	defer cancel()
	got, err := sess.Get(ctx, "mark")
	if err != nil || got != want {
		t.Fatalf("%s: the guest keeps (%q, %v), want %q", when, got, err, want)
	}
}

func powerOff(t *testing.T, sess GuestSession, m hypervisor.Machine) {
	t.Helper()
	step(t, "power off from the guest", sess.PowerOff)
	waitDone(t, m, "after the guest powered off")
}

// step runs one operation, bounded, and fails the test when it fails.
func step(t *testing.T, what string, do func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
	defer cancel()
	if err := do(ctx); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func waitDone(t *testing.T, m hypervisor.Machine, when string) {
	t.Helper()
	select {
	case <-m.Done():
	case <-time.After(stepTimeout):
		t.Fatalf("Done not closed %s", when)
	}
}

func isOpen(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return false
	default:
		return true
	}
}

func killIf(m hypervisor.Machine) {
	if m != nil {
		m.Kill(context.Background())
	}
}

func randomWord(t *testing.T) string {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
