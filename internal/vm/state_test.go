package vm

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/hypervisor"
	"github.com/openslicer/openslicer/internal/hypervisor/hypervisortest"
	"github.com/openslicer/openslicer/internal/vmstate"
)

// gatedBackend is the fake backend with machines whose Pause, Resume and
// Suspend can be held by the test: a hypervisor call that takes its time.
type gatedBackend struct {
	*hypervisortest.Fake
	mu    sync.Mutex
	gates map[string]*gate
}

// gate holds the next call of one machine method.
type gate struct {
	entered chan struct{}     // closed when the call arrives
	release chan func() error // what the call does then; nil: what the fake does
}

func gated(e *env) *gatedBackend {
	b := &gatedBackend{Fake: e.fake, gates: map[string]*gate{}}
	e.m.opt.Backend = b
	e.m.backends = hypervisor.NewBackends(b) // VMs find their backend by name here
	return b
}

// arm makes the next call of method ("pause", "resume", "suspend") wait
// for the test's release; a test that fails first lets it go.
// during arms method's gate, runs call in the background and returns
// once call's hypervisor call is in flight; call's result comes on the
// channel.
func (b *gatedBackend) during(t *testing.T, method string, call func() error) (*gate, <-chan error) {
	g := b.arm(t, method)
	done := make(chan error, 1)
	go func() { done <- call() }()
	g.inFlight(t)
	return g, done
}

func (b *gatedBackend) arm(t *testing.T, method string) *gate {
	g := &gate{entered: make(chan struct{}), release: make(chan func() error, 1)}
	t.Cleanup(func() {
		select {
		case g.release <- nil:
		default:
		}
	})
	b.mu.Lock()
	b.gates[method] = g
	b.mu.Unlock()
	return g
}

func (b *gatedBackend) hold(method string, call func() error) error {
	b.mu.Lock()
	g := b.gates[method]
	delete(b.gates, method)
	b.mu.Unlock()
	if g == nil {
		return call()
	}
	close(g.entered)
	if f := <-g.release; f != nil {
		return f()
	}
	return call()
}

func (b *gatedBackend) Start(ctx context.Context, spec hypervisor.Spec) (hypervisor.Machine, error) {
	m, err := b.Fake.Start(ctx, spec)
	if err != nil {
		return nil, err
	}
	return &gatedMachine{Machine: m, b: b}, nil
}

type gatedMachine struct {
	hypervisor.Machine
	b *gatedBackend
}

func (m *gatedMachine) Pause(ctx context.Context) error {
	return m.b.hold("pause", func() error { return m.Machine.Pause(ctx) })
}

func (m *gatedMachine) Resume(ctx context.Context) error {
	return m.b.hold("resume", func() error { return m.Machine.Resume(ctx) })
}

func (m *gatedMachine) Suspend(ctx context.Context, path string) error {
	return m.b.hold("suspend", func() error { return m.Machine.Suspend(ctx, path) })
}

// inFlight waits for the held call to arrive.
func (g *gate) inFlight(t *testing.T) {
	t.Helper()
	select {
	case <-g.entered:
	case <-time.After(30 * time.Second):
		t.Fatal("the hypervisor call never came")
	}
}

// answers runs f and fails the test if it does not return: it would wait
// on a lock held across the hypervisor call. The bound only keeps a broken
// build from hanging; it measures nothing.
func answers(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not answer while a hypervisor call was under way: a lock is held across it", what)
	}
}

// refusedIn checks that err is a refusal of op naming state.
func refusedIn(t *testing.T, err error, op vmstate.Op, state vmstate.State) {
	t.Helper()
	var r *vmstate.Refused
	if !errors.As(err, &r) || !errors.Is(err, api.ErrConflict) || r.Op != op || r.State != state {
		t.Errorf("%s = %v, want a 409 refusal naming %s", op, err, state.Label())
	}
}

func createOne(t *testing.T, e *env, persistent bool) string {
	t.Helper()
	resp, err := e.m.Create(context.Background(), "sbox", api.CreateNodeRequest{Persistent: persistent}, CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return resp.Hostname
}

// While a pause waits on the hypervisor, everything else about the VM
// still answers at once: reads show the state it had, operations the table
// refuses in Pausing are 409 naming it, and the pause completes once the
// hypervisor does.
func TestPauseHoldsNoLock(t *testing.T) {
	e := newEnv(t, &hypervisortest.Fake{})
	b := gated(e)
	ctx := context.Background()
	host := createOne(t, e, false)

	g, paused := b.during(t, "pause", func() error { return e.m.Pause(ctx, host) })

	answers(t, "List", func() {
		n, err := e.m.List(Filter{})
		if err != nil || len(n) != 1 || n[0].Status != api.StatusRunning || n[0].State != string(vmstate.Running) {
			t.Errorf("List while pausing = %+v, %v; want the state it had, running", n, err)
		}
	})
	answers(t, "Describe", func() {
		if _, err := e.m.Describe(host); err != nil {
			t.Errorf("Describe: %v", err)
		}
	})
	answers(t, "UpdateTags", func() {
		if _, err := e.m.UpdateTags(ctx, host, api.VMTagUpdate{Add: []string{"k=v"}}); err != nil {
			t.Errorf("UpdateTags: %v", err)
		}
	})
	answers(t, "Stats", func() { e.m.Stats(ctx, host) })
	answers(t, "a second pause", func() { refusedIn(t, e.m.Pause(ctx, host), vmstate.Pause, vmstate.Pausing) })
	answers(t, "Resume", func() { refusedIn(t, e.m.Resume(ctx, host), vmstate.Resume, vmstate.Pausing) })
	answers(t, "Suspend", func() { refusedIn(t, e.m.Suspend(ctx, host), vmstate.Suspend, vmstate.Pausing) })
	answers(t, "Shutdown", func() { refusedIn(t, e.m.Shutdown(ctx, host, ActionShutdown), vmstate.Shutdown, vmstate.Pausing) })
	answers(t, "Exec", func() {
		_, err := e.m.Exec(ctx, host, &api.ExecRequest{Command: "true"}, nil)
		refusedIn(t, err, vmstate.Exec, vmstate.Pausing)
		if err == nil || !strings.Contains(err.Error(), `exec in vm "sbox-1": it is Pausing`) {
			t.Errorf("message %v", err)
		}
	})

	g.release <- nil
	if err := <-paused; err != nil {
		t.Fatalf("Pause: %v", err)
	}
	if rec := e.record(t, host); rec.State != vmstate.Paused || !e.fake.Last(host).Paused() {
		t.Fatalf("after the pause: record %s, machine paused %v", rec.State, e.fake.Last(host).Paused())
	}
	if err := e.m.Resume(ctx, host); err != nil {
		t.Fatalf("Resume: %v", err)
	}
}

// A failed hypervisor call leaves the VM as it was, free for the next op.
func TestFailedPauseLeavesVMRunning(t *testing.T) {
	e := newEnv(t, &hypervisortest.Fake{})
	b := gated(e)
	ctx := context.Background()
	host := createOne(t, e, false)
	g, paused := b.during(t, "pause", func() error { return e.m.Pause(ctx, host) })
	g.release <- func() error { return errors.New("qmp: stop failed") }
	if err := <-paused; err == nil || !strings.Contains(err.Error(), "qmp: stop failed") {
		t.Fatalf("Pause = %v, want the hypervisor's error", err)
	}
	if n, _ := e.m.List(Filter{}); n[0].State != string(vmstate.Running) {
		t.Fatalf("after a failed pause: %s, want running", n[0].State)
	}
	if err := e.m.Pause(ctx, host); err != nil {
		t.Fatalf("Pause after a failed one: %v", err)
	}
}

// A machine that exits while a pause is under way is a stop: the pause
// must not then record the VM as paused.
func TestExitDuringPause(t *testing.T) {
	e := newEnv(t, &hypervisortest.Fake{})
	b := gated(e)
	ctx := context.Background()
	host := createOne(t, e, true)
	g, paused := b.during(t, "pause", func() error { return e.m.Pause(ctx, host) })

	e.fake.Last(host).Exit() // the guest powers off
	waitFor(t, func() bool { return e.record(t, host).State == vmstate.Stopped })
	g.release <- func() error { return nil } // the pause "succeeds" on a dead machine
	refusedIn(t, <-paused, vmstate.Pause, vmstate.Stopped)
	if rec := e.record(t, host); rec.State != vmstate.Stopped {
		t.Fatalf("record after the exit: %s, want stopped", rec.State)
	}
	if _, err := e.m.Relaunch(ctx, host, CreateOptions{}); err != nil {
		t.Fatalf("Relaunch: %v", err)
	}
}

// A delete does not wait for a pause under way, and the pause, whatever
// its hypervisor says, cannot bring the VM back.
func TestDeleteDuringPause(t *testing.T) {
	e := newEnv(t, &hypervisortest.Fake{})
	b := gated(e)
	ctx := context.Background()
	host := createOne(t, e, false)
	g, paused := b.during(t, "pause", func() error { return e.m.Pause(ctx, host) })

	answers(t, "Delete", func() {
		if _, err := e.m.Delete(ctx, "sbox", host); err != nil {
			t.Errorf("Delete: %v", err)
		}
	})
	g.release <- func() error { return nil }
	refusedIn(t, <-paused, vmstate.Pause, vmstate.Gone)
	e.assertEmpty(t)
}

// While a suspend migrates, the VM answers reads and refuses guest
// operations; the machine's exit that ends the suspend is not a stop.
func TestSuspendHoldsNoLock(t *testing.T) {
	e := newEnv(t, &hypervisortest.Fake{})
	b := gated(e)
	ctx := context.Background()
	host := createOne(t, e, false)
	g, suspended := b.during(t, "suspend", func() error { return e.m.Suspend(ctx, host) })

	answers(t, "List", func() {
		if n, _ := e.m.List(Filter{}); len(n) != 1 || n[0].State != string(vmstate.Running) {
			t.Errorf("List while suspending = %+v", n)
		}
	})
	answers(t, "Exec", func() {
		_, err := e.m.Exec(ctx, host, &api.ExecRequest{Command: "true"}, nil)
		refusedIn(t, err, vmstate.Exec, vmstate.Suspending)
	})
	answers(t, "Pause", func() { refusedIn(t, e.m.Pause(ctx, host), vmstate.Pause, vmstate.Suspending) })

	g.release <- nil // the fake writes its state file and exits
	if err := <-suspended; err != nil {
		t.Fatalf("Suspend: %v", err)
	}
	n, _ := e.m.List(Filter{})
	if len(n) != 1 || n[0].State != string(vmstate.Suspended) || n[0].Status != api.StatusPaused {
		t.Fatalf("after suspend: %+v (an ephemeral vm whose suspend exited its machine must be kept)", n)
	}
}

// A suspend that fails after its machine has exited leaves a stopped VM,
// not a running one without a machine: the exit the reaper left to the
// suspend is dealt with.
func TestSuspendFailingAfterExit(t *testing.T) {
	e := newEnv(t, &hypervisortest.Fake{})
	b := gated(e)
	ctx := context.Background()
	host := createOne(t, e, true)
	g, suspended := b.during(t, "suspend", func() error { return e.m.Suspend(ctx, host) })

	machine := e.fake.Last(host)
	g.release <- func() error {
		machine.Exit()
		e.m.wg.Wait() // the reaper has seen the exit, and left it to the suspend
		return errors.New("migration failed: qemu exited")
	}
	if err := <-suspended; err == nil || !strings.Contains(err.Error(), "migration failed") {
		t.Fatalf("Suspend = %v, want the hypervisor's error", err)
	}
	waitState(t, e, host, vmstate.Stopped)
	if _, err := e.m.Relaunch(ctx, host, CreateOptions{}); err != nil {
		t.Fatalf("Relaunch after the failed suspend: %v", err)
	}
}

// Shutdown of a paused VM resumes it first (through the table: a resume
// under way refuses other ops), so its guest can hear the request; the
// exit then makes it stopped, and a stopped VM's shutdown is refused.
func TestShutdownOfPausedVM(t *testing.T) {
	e := newEnv(t, &hypervisortest.Fake{})
	ctx := context.Background()
	host := createOne(t, e, true)
	if err := e.m.Pause(ctx, host); err != nil {
		t.Fatal(err)
	}
	// No agent in this fake: the guest never hears the request, so the
	// test powers it off once it has been resumed. Shutdown may see that
	// exit before it asks the guest, and then says the VM is stopped.
	done := make(chan error, 1)
	go func() { done <- e.m.Shutdown(ctx, host, ActionShutdown) }()
	waitFor(t, func() bool { return !e.fake.Last(host).Paused() })
	e.fake.Last(host).Exit()
	if err := <-done; err != nil {
		refusedIn(t, err, vmstate.Shutdown, vmstate.Stopped)
	}
	waitState(t, e, host, vmstate.Stopped)
	refusedIn(t, e.m.Shutdown(ctx, host, ActionShutdown), vmstate.Shutdown, vmstate.Stopped)
}
