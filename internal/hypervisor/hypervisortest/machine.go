package hypervisortest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"sync"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/hypervisor"
)

// errEnded is returned by operations on a fake machine that has ended.
var errEnded = fmt.Errorf("fake machine has ended: %w", api.ErrConflict)

// Machine is a fake running VM. Its guest's memory is a small key/value
// map (Load, Store) that Suspend saves and a restore brings back.
type Machine struct {
	fake *Fake
	Spec hypervisor.Spec
	pid  int
	done chan struct{}
	once sync.Once

	mu         sync.Mutex
	paused     bool
	resumed    chan struct{} // closed by Resume; nil while running
	suspending bool
	mem        map[string]string
	conns      map[net.Conn]struct{} // both ends of each agent connection
	// disks are the disks it writes now, when a Capture moved them onto
	// overlays (nil: Spec's); a save records them, as QEMU's does.
	disks []hypervisor.Disk
	// how is the way the machine ended: "exit", "kill", "shutdown" or
	// "suspend".
	how string
}

var _ hypervisor.Machine = (*Machine)(nil)

// Handle implements hypervisor.Machine.
func (m *Machine) Handle() hypervisor.Handle {
	return hypervisor.Handle{Backend: m.fake.Name(), PID: m.pid, RunDir: m.Spec.RunDir}
}

// DialAgent implements hypervisor.Machine. The guest end of the
// connection reads and writes nothing while the machine is paused, and
// both ends close when the machine ends.
func (m *Machine) DialAgent(ctx context.Context) (net.Conn, error) {
	host, guest := net.Pipe()
	m.mu.Lock()
	switch {
	case m.exited():
		m.mu.Unlock()
		return nil, fmt.Errorf("dial agent: %w", errEnded)
	case m.suspending:
		m.mu.Unlock()
		return nil, fmt.Errorf("dial agent: machine is being suspended: %w", api.ErrConflict)
	}
	m.conns[host], m.conns[guest] = struct{}{}, struct{}{}
	m.mu.Unlock()
	g := &guestConn{Conn: guest, m: m}
	switch {
	case m.fake.Agent != nil:
		go m.fake.Agent(g)
	case m.fake.Guest != nil:
		go m.fake.Guest(m, g)
	}
	return host, nil
}

// guestConn is the guest's end of an agent connection: a paused guest
// does not run, so it neither takes in what it read nor writes.
type guestConn struct {
	net.Conn
	m *Machine
}

func (c *guestConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if werr := c.m.waitRunning(); werr != nil {
		return 0, net.ErrClosed
	}
	return n, err
}

func (c *guestConn) Write(p []byte) (int, error) {
	if err := c.m.waitRunning(); err != nil {
		return 0, net.ErrClosed
	}
	return c.Conn.Write(p)
}

// waitRunning waits while the machine is paused; it fails once the
// machine has ended.
func (m *Machine) waitRunning() error {
	for {
		m.mu.Lock()
		resumed := m.resumed
		m.mu.Unlock()
		if resumed == nil {
			if m.exited() {
				return errEnded
			}
			return nil
		}
		select {
		case <-resumed:
		case <-m.done:
			return errEnded
		}
	}
}

// Done implements hypervisor.Machine.
func (m *Machine) Done() <-chan struct{} { return m.done }

// Exit makes the machine exit as if the guest powered off.
func (m *Machine) Exit() { m.end("exit") }

func (m *Machine) end(how string) {
	m.once.Do(func() {
		m.mu.Lock()
		m.how = how
		conns := m.conns
		m.conns = map[net.Conn]struct{}{}
		close(m.done) // under mu: DialAgent sees it before adding a conn
		m.mu.Unlock()
		for c := range conns {
			c.Close()
		}
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

// Load returns the value the guest keeps in its memory under key.
func (m *Machine) Load(key string) (string, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.mem[key]
	return v, ok
}

// Store keeps value in the guest's memory under key.
func (m *Machine) Store(key, value string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.mem[key] = value
}

// Kill implements hypervisor.Machine.
func (m *Machine) Kill(ctx context.Context) error {
	m.end("kill")
	return nil
}

// Shutdown implements hypervisor.Machine: the guest powers off at once,
// unless the Fake ignores shutdowns.
func (m *Machine) Shutdown(ctx context.Context) error {
	if m.exited() {
		return fmt.Errorf("shutdown: %w", errEnded)
	}
	if !m.fake.IgnoreShutdown {
		m.end("shutdown")
	}
	return nil
}

// Pause implements hypervisor.Machine.
func (m *Machine) Pause(ctx context.Context) error { return m.setPaused(true) }

// Resume implements hypervisor.Machine.
func (m *Machine) Resume(ctx context.Context) error { return m.setPaused(false) }

func (m *Machine) setPaused(p bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.exited() {
		return errEnded
	}
	switch {
	case p && !m.paused:
		m.resumed = make(chan struct{})
	case !p && m.paused:
		close(m.resumed)
		m.resumed = nil
	}
	m.paused = p
	return nil
}

// Suspend implements hypervisor.Machine: it closes the agent connections,
// writes a state directory (the guest's memory, and its device state,
// the paused flag, as two files, as Firecracker does) and ends the
// machine.
func (m *Machine) Suspend(ctx context.Context, stateDir string) error {
	if err := m.fake.SuspendErr; err != nil {
		return err
	}
	if !filepath.IsAbs(stateDir) {
		return fmt.Errorf("%w: state directory %q is not an absolute path", api.ErrInvalid, stateDir)
	}
	m.mu.Lock()
	if m.exited() {
		m.mu.Unlock()
		return fmt.Errorf("suspend: %w", errEnded)
	}
	m.suspending = true
	conns := m.conns
	m.conns = map[net.Conn]struct{}{}
	mem, paused := maps.Clone(m.mem), m.paused
	m.mu.Unlock()
	for c := range conns {
		c.Close()
	}
	if err := m.save(stateDir, mem, paused); err != nil {
		m.mu.Lock()
		m.suspending = false
		m.mu.Unlock()
		return fmt.Errorf("suspend: %w", err)
	}
	m.end("suspend")
	return nil
}

var _ hypervisor.Capturer = (*Machine)(nil)

// Capture implements hypervisor.Capturer: it closes the agent
// connections, moves each disk given an overlay onto it (a small file
// naming the disk it is over; the disk is made read-only), and writes a
// clonable state directory as Suspend does, naming the disks as they
// were before; it then leaves the machine paused, or running when asked.
func (m *Machine) Capture(ctx context.Context, stateDir string, opt hypervisor.CaptureOptions) error {
	if err := m.fake.CaptureErr; err != nil {
		return err
	}
	if !filepath.IsAbs(stateDir) {
		return fmt.Errorf("%w: state directory %q is not an absolute path", api.ErrInvalid, stateDir)
	}
	if opt.Resume && m.Spec.MemoryFile != "" {
		return fmt.Errorf("%w: a machine with a memory file cannot resume after a capture", api.ErrInvalid)
	}
	m.mu.Lock()
	if m.exited() {
		m.mu.Unlock()
		return fmt.Errorf("capture: %w", errEnded)
	}
	conns := m.conns
	m.conns = map[net.Conn]struct{}{}
	mem, paused, disks := maps.Clone(m.mem), m.paused, m.disksLocked()
	m.mu.Unlock()
	for c := range conns {
		c.Close()
	}
	moved, err := layer(disks, opt.Overlays)
	if err == nil {
		err = m.writeState(stateDir, mem, paused, true)
	}
	if err != nil {
		return fmt.Errorf("capture: %w", err)
	}
	m.mu.Lock()
	m.disks = moved
	m.mu.Unlock()
	if !opt.Resume && !paused {
		return m.setPaused(true)
	}
	return nil
}

// disksLocked returns the disks the machine writes now; m.mu is held.
func (m *Machine) disksLocked() []hypervisor.Disk {
	if m.disks != nil {
		return m.disks
	}
	return m.Spec.Disks
}

// layer makes the overlays of a Capture over disks and returns the disks
// the machine writes once it has.
func layer(disks []hypervisor.Disk, overlays []string) ([]hypervisor.Disk, error) {
	moved := append([]hypervisor.Disk(nil), disks...)
	if len(overlays) == 0 {
		return moved, nil
	}
	if len(overlays) != len(disks) {
		return nil, fmt.Errorf("%w: %d overlays for %d disks", api.ErrInvalid, len(overlays), len(disks))
	}
	for i, o := range overlays {
		if o == "" {
			continue
		}
		if err := os.WriteFile(o, []byte("fake overlay over "+disks[i].Path), 0o644); err != nil {
			return nil, err
		}
		if err := os.Chmod(disks[i].Path, 0o444); err != nil {
			return nil, err
		}
		moved[i] = hypervisor.Disk{Path: o, Format: "qcow2"}
	}
	return moved, nil
}

func (m *Machine) save(stateDir string, mem map[string]string, paused bool) error {
	return m.writeState(stateDir, mem, paused, false)
}

func (m *Machine) writeState(stateDir string, mem map[string]string, paused, clonable bool) error {
	w, err := hypervisor.CreateState(stateDir)
	if err != nil {
		return err
	}
	err = writeJSON(w.Path(memoryFile), mem)
	if err == nil {
		err = writeJSON(w.Path(devicesFile), map[string]bool{"paused": paused})
	}
	spec := m.Spec
	m.mu.Lock()
	spec.Disks = m.disksLocked()
	m.mu.Unlock()
	if err == nil {
		err = w.Commit(hypervisor.Manifest{
			Backend: m.fake.Name(), Format: fakeFormat, Machine: hypervisor.ShapeOf(spec, fakeAccel), Clonable: clonable,
			Files: []hypervisor.StateFile{
				{Name: memoryFile, Holds: []string{hypervisor.HoldsMemory}},
				{Name: devicesFile, Holds: []string{hypervisor.HoldsDevices}},
			},
		})
	}
	if err != nil {
		return errors.Join(err, w.Abort())
	}
	return nil
}

func writeJSON(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}

func (m *Machine) exited() bool {
	select {
	case <-m.done:
		return true
	default:
		return false
	}
}
