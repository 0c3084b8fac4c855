// Package hypervisortest holds the conformance suite every hypervisor
// backend must pass (Run, suite.go) and Fake, an in-memory backend for
// tests of the layers above the backends, held to the same suite.
//
// A fake machine has no guest of its own: its agent channel is handed to
// a function the test supplies, typically the real agent server running
// in-process (Fake.Agent), or KVGuest (Fake.Guest), a small guest whose
// memory the machine keeps and suspends.
package hypervisortest

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/hypervisor"
)

// Names a fake machine's state directory uses.
const (
	fakeName    = "fake"
	fakeFormat  = "fake-v1"
	fakeAccel   = "fake"
	memoryFile  = "memory.json"
	devicesFile = "vmstate.json"
)

// Host is where fake machines run: what outlives a daemon, as processes
// do. Fake values that share a Host see each other's machines, so a second
// Fake (a restarted daemon) can Attach to them.
type Host struct {
	mu       sync.Mutex
	machines map[string]*Machine // by run dir, the latest of each
	nextPID  int
}

// Fake is an in-memory backend.
type Fake struct {
	// StartErr, when set, makes Start fail.
	StartErr error
	// SuspendErr, when set, makes Suspend fail with it, e.g.
	// hypervisor.ErrUnsupported for a backend that cannot suspend.
	SuspendErr error
	// CaptureErr, when set, makes Capture fail with it.
	CaptureErr error
	// Agent serves the guest side of each agent connection; when nil,
	// Guest does; with neither, connections are left unanswered, like a
	// guest that never boots.
	Agent func(conn net.Conn)
	// Guest serves the guest side of each agent connection with access to
	// the machine (its memory, its power): see KVGuest.
	Guest func(m *Machine, conn net.Conn)
	// OnStart, when set, is called with each machine once started, to
	// play its guest (write its console, make it exit).
	OnStart func(m *Machine)
	// IgnoreShutdown makes machines ignore Shutdown (the ACPI power
	// button), like a guest with nothing listening for it.
	IgnoreShutdown bool
	// Host is where the machines run; nil gives this Fake a host of its
	// own.
	Host *Host
	// Called is the backend's name (Name); empty is "fake". Tests of a
	// daemon with several backends give each its own.
	Called string

	once sync.Once
}

var _ hypervisor.Backend = (*Fake)(nil)

func (f *Fake) host() *Host {
	f.once.Do(func() {
		if f.Host == nil {
			f.Host = &Host{}
		}
	})
	return f.Host
}

// Name implements hypervisor.Backend.
func (f *Fake) Name() string {
	if f.Called != "" {
		return f.Called
	}
	return fakeName
}

// Check implements hypervisor.Backend.
func (f *Fake) Check() error { return nil }

// Start implements hypervisor.Backend.
func (f *Fake) Start(ctx context.Context, spec hypervisor.Spec) (hypervisor.Machine, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	if f.StartErr != nil {
		return nil, f.StartErr
	}
	mem := map[string]string{}
	if spec.RestoreFrom != "" {
		var err error
		if mem, err = loadState(f.Name(), spec); err != nil {
			return nil, fmt.Errorf("restore fake machine %q: %w", spec.Name, err)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	h := f.host()
	h.mu.Lock()
	if h.machines == nil {
		h.machines = map[string]*Machine{}
	}
	if old := h.machines[spec.RunDir]; old != nil && !old.exited() {
		h.mu.Unlock()
		return nil, fmt.Errorf("%w: fake machine pid %d already runs in %s", api.ErrConflict, old.pid, spec.RunDir)
	}
	h.nextPID++
	m := &Machine{
		fake: f, Spec: spec, pid: 1000 + h.nextPID, done: make(chan struct{}),
		mem: mem, conns: map[net.Conn]struct{}{},
	}
	h.machines[spec.RunDir] = m
	h.mu.Unlock()
	if f.OnStart != nil {
		f.OnStart(m)
	}
	return m, nil
}

// loadState reads the guest memory of the state directory spec restores
// from, once its manifest matches spec.
func loadState(backend string, spec hypervisor.Spec) (map[string]string, error) {
	man, err := hypervisor.OpenState(spec.RestoreFrom, backend, fakeFormat, hypervisor.ShapeOf(spec, fakeAccel))
	if err != nil {
		return nil, err
	}
	name, ok := man.File(hypervisor.HoldsMemory)
	if !ok {
		return nil, fmt.Errorf("%w: state %s holds no memory", api.ErrInvalid, spec.RestoreFrom)
	}
	b, err := os.ReadFile(filepath.Join(spec.RestoreFrom, name))
	if err != nil {
		return nil, err
	}
	mem := map[string]string{}
	if err := json.Unmarshal(b, &mem); err != nil {
		return nil, fmt.Errorf("%w: state %s: memory: %w", api.ErrInvalid, spec.RestoreFrom, err)
	}
	return mem, nil
}

// Attach implements hypervisor.Backend: it finds the machine of the
// handle's run dir on the Host.
func (f *Fake) Attach(ctx context.Context, h hypervisor.Handle) (hypervisor.Machine, error) {
	if h.Backend != "" && h.Backend != f.Name() {
		return nil, fmt.Errorf("%w: handle of backend %q given to %q", api.ErrInvalid, h.Backend, f.Name())
	}
	if !filepath.IsAbs(h.RunDir) {
		return nil, fmt.Errorf("%w: handle run dir %q is not an absolute path", api.ErrInvalid, h.RunDir)
	}
	host := f.host()
	host.mu.Lock()
	defer host.mu.Unlock()
	m, ok := host.machines[h.RunDir]
	if !ok || m.exited() || (h.PID != 0 && h.PID != m.pid) {
		return nil, fmt.Errorf("fake machine in %s: %w", h.RunDir, api.ErrNotFound)
	}
	return m, nil
}

// Reclaim implements hypervisor.Backend: the machine of runDir is killed.
func (f *Fake) Reclaim(ctx context.Context, runDir string) error {
	if !filepath.IsAbs(runDir) {
		return fmt.Errorf("%w: run dir %q is not an absolute path", api.ErrInvalid, runDir)
	}
	host := f.host()
	host.mu.Lock()
	m := host.machines[runDir]
	host.mu.Unlock()
	if m != nil {
		m.end("kill")
	}
	return nil
}

// Last returns a machine started last for the VM name (Spec.Name), or
// nil.
func (f *Fake) Last(name string) *Machine {
	host := f.host()
	host.mu.Lock()
	defer host.mu.Unlock()
	var last *Machine
	for _, m := range host.machines {
		if m.Spec.Name == name && (last == nil || m.pid > last.pid) {
			last = m
		}
	}
	return last
}

// Running returns the machines that have not exited.
func (f *Fake) Running() []*Machine {
	host := f.host()
	host.mu.Lock()
	defer host.mu.Unlock()
	var out []*Machine
	for _, m := range host.machines {
		if !m.exited() {
			out = append(out, m)
		}
	}
	return out
}
