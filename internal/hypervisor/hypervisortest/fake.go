// Package hypervisortest provides Fake, an in-memory hypervisor.Backend for
// tests of the layers above the backends. A fake machine has no guest: its
// agent channel is handed to a function the test supplies (typically the
// real agent server running in-process).
package hypervisortest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/hypervisor"
)

// Fake is an in-memory backend.
type Fake struct {
	// StartErr, when set, makes Start fail.
	StartErr error
	// SuspendErr, when set, makes Suspend fail with it, e.g.
	// hypervisor.ErrUnsupported for a backend that cannot suspend.
	SuspendErr error
	// Agent serves the guest side of each agent connection; nil leaves
	// connections unanswered, like a guest that never boots.
	Agent func(conn net.Conn)
	// OnStart, when set, is called with each machine once started, to
	// play its guest (write its console, make it exit).
	OnStart func(m *Machine)
	// IgnoreShutdown makes machines ignore Shutdown (the ACPI power
	// button), like a guest with nothing listening for it.
	IgnoreShutdown bool

	mu       sync.Mutex
	machines map[string]*Machine
	nextPID  int
}

// Name implements hypervisor.Backend.
func (f *Fake) Name() string { return "fake" }

// Check implements hypervisor.Backend.
func (f *Fake) Check() error { return nil }

// Start implements hypervisor.Backend.
func (f *Fake) Start(ctx context.Context, spec hypervisor.Spec) (hypervisor.Machine, error) {
	if f.StartErr != nil {
		return nil, f.StartErr
	}
	if spec.Incoming != "" {
		if _, err := os.ReadFile(spec.Incoming); err != nil {
			return nil, fmt.Errorf("restore from state file: %w", err)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.machines == nil {
		f.machines = map[string]*Machine{}
	}
	f.nextPID++
	m := &Machine{fake: f, Spec: spec, pid: 1000 + f.nextPID, done: make(chan struct{})}
	f.machines[spec.RunDir] = m
	if f.OnStart != nil {
		f.OnStart(m)
	}
	return m, nil
}

// Attach implements hypervisor.Backend: it finds a machine by run dir.
func (f *Fake) Attach(ctx context.Context, h hypervisor.Handle) (hypervisor.Machine, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	m, ok := f.machines[h.RunDir]
	if !ok || m.exited() {
		return nil, fmt.Errorf("machine in %s: %w", h.RunDir, api.ErrNotFound)
	}
	return m, nil
}

// Reclaim implements hypervisor.Backend: the machine of runDir is killed.
func (f *Fake) Reclaim(ctx context.Context, runDir string) error {
	f.mu.Lock()
	m := f.machines[runDir]
	f.mu.Unlock()
	if m != nil {
		m.end("kill")
	}
	return nil
}

// Last returns the machine last started for the VM name (Spec.Name), or
// nil.
func (f *Fake) Last(name string) *Machine {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, m := range f.machines {
		if m.Spec.Name == name {
			return m
		}
	}
	return nil
}

// Running returns the machines that have not exited.
func (f *Fake) Running() []*Machine {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*Machine
	for _, m := range f.machines {
		if !m.exited() {
			out = append(out, m)
		}
	}
	return out
}

// Machine is a fake running VM.
type Machine struct {
	fake   *Fake
	Spec   hypervisor.Spec
	pid    int
	mu     sync.Mutex
	paused bool
	done   chan struct{}
	once   sync.Once
	// how is the way the machine ended: "exit", "kill", "shutdown" or
	// "suspend".
	how string
}

// Handle implements hypervisor.Machine.
func (m *Machine) Handle() hypervisor.Handle {
	return hypervisor.Handle{Backend: "fake", PID: m.pid, RunDir: m.Spec.RunDir}
}

// DialAgent implements hypervisor.Machine.
func (m *Machine) DialAgent(ctx context.Context) (net.Conn, error) {
	if m.exited() {
		return nil, errors.New("machine exited")
	}
	host, guest := net.Pipe()
	if m.fake.Agent != nil {
		go m.fake.Agent(guest)
	} else {
		go func() { <-m.done; guest.Close() }()
	}
	return host, nil
}

// Done implements hypervisor.Machine.
func (m *Machine) Done() <-chan struct{} { return m.done }

// Exit makes the machine exit as if the guest powered off.
func (m *Machine) Exit() { m.end("exit") }

func (m *Machine) end(how string) {
	m.once.Do(func() {
		m.mu.Lock()
		m.how = how
		m.mu.Unlock()
		close(m.done)
	})
}

// Ended returns how the machine ended: "exit" (Exit), "kill", "shutdown"
// or "suspend"; "" while it runs.
func (m *Machine) Ended() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.how
}

// Paused reports whether the machine is paused.
func (m *Machine) Paused() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.paused
}

// Kill implements hypervisor.Machine.
func (m *Machine) Kill(ctx context.Context) error {
	m.end("kill")
	return nil
}

// Shutdown implements hypervisor.Machine: the machine exits at once,
// unless the Fake ignores shutdowns.
func (m *Machine) Shutdown(ctx context.Context) error {
	if !m.fake.IgnoreShutdown {
		m.end("shutdown")
	}
	return nil
}

// Pause implements hypervisor.Machine.
func (m *Machine) Pause(ctx context.Context) error { return m.setPaused(true) }

// Resume implements hypervisor.Machine.
func (m *Machine) Resume(ctx context.Context) error { return m.setPaused(false) }

// Suspend implements hypervisor.Machine: it writes a small state file
// (the machine's name) and exits the machine.
func (m *Machine) Suspend(ctx context.Context, statePath string) error {
	if err := m.fake.SuspendErr; err != nil {
		return err
	}
	if m.exited() {
		return fmt.Errorf("suspend: machine exited: %w", api.ErrConflict)
	}
	if err := os.WriteFile(statePath, []byte(m.Spec.Name+"\n"), 0o600); err != nil {
		return fmt.Errorf("suspend: %w", err)
	}
	m.end("suspend")
	return nil
}

func (m *Machine) setPaused(p bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.paused = p
	return nil
}

func (m *Machine) exited() bool {
	select {
	case <-m.done:
		return true
	default:
		return false
	}
}
