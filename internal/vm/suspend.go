package vm

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/hypervisor"
	"github.com/openslicer/openslicer/internal/vmstate"
)

// statePath is where a suspended VM's memory and device state is kept: a
// state directory (hypervisor.CreateState) its backend writes and reads,
// or, for a VM an earlier daemon suspended, the single file it wrote
// there, which the QEMU backend still restores from.
func (m *Manager) statePath(hostname string) string {
	return filepath.Join(m.opt.DisksDir, hostname+".state")
}

// Suspend saves a running or paused VM's memory and device state to disk;
// its VM process then exits and its memory is freed. Restore brings it
// back. A backend that cannot is ErrNotImplemented (501).
func (m *Manager) Suspend(ctx context.Context, hostname string) error {
	in, err := m.get(hostname)
	if err != nil {
		return err
	}
	return m.suspend(ctx, in, false)
}

// suspend suspends in; atStop marks a suspend of the daemon's stop, which
// the next start undoes (RestoreSuspended). The VM is Suspending while the
// machine saves itself and exits, with no lock held: that exit is the
// suspend's, not a stop.
func (m *Manager) suspend(ctx context.Context, in *instance, atStop bool) error {
	c, err := m.claim(in, vmstate.Suspend)
	if err != nil {
		return err
	}
	hostname, machine := c.vm, c.machine
	in.mu.Lock()
	stateDir := m.statePath(machineName(in.rec))
	in.mu.Unlock()

	if c.from == vmstate.Running {
		releaseAgent(ctx, m.log.With("vm", hostname), in.agentClient())
	}
	if err := machine.Suspend(ctx, stateDir); err != nil {
		if errors.Is(err, hypervisor.ErrUnsupported) {
			err = fmt.Errorf("suspend vm %q: %w: %w", hostname, err, api.ErrNotImplemented)
		} else {
			err = fmt.Errorf("suspend vm %q: %w", hostname, err)
		}
		err = m.settle(in, c, err, nil)
		select {
		case <-machine.Done():
			// It exited all the same: its watcher left the exit to
			// the suspend, which now deals with it as a stop.
			m.exited(in, machine)
		default:
		}
		return err
	}
	<-machine.Done()
	if err := m.networkDown(ctx, in); err != nil {
		m.log.Error("tear down network of suspended vm", "vm", hostname, "err", err)
	}
	err = m.settle(in, c, nil, func() {
		in.machine = nil
		if in.agent != nil {
			in.agent.Close()
			in.agent = nil
		}
		if in.endLife != nil {
			in.endLife()
		}
		in.rec.RestoreAtStart = ""
		if atStop {
			in.rec.RestoreAtStart = c.from
		}
	})
	if err != nil {
		return err
	}
	m.log.Info("vm suspended", "vm", hostname)
	return nil
}

// Restore boots a suspended VM from its saved state, with its processes
// and memory as they were.
func (m *Manager) Restore(ctx context.Context, hostname string, opt CreateOptions) error {
	if opt.Wait == WaitUserdata {
		return fmt.Errorf("%w: restore waits only for the agent (wait=agent)", api.ErrInvalid)
	}
	stateDir := m.statePath(hostname)
	if in, err := m.get(hostname); err == nil {
		in.mu.Lock()
		stateDir = m.statePath(machineName(in.rec))
		in.mu.Unlock()
	}
	in, err := m.restart(ctx, hostname, vmstate.Restore, stateDir, opt)
	if err != nil {
		return err
	}
	in.mu.Lock()
	restoreAtStart := in.rec.RestoreAtStart != ""
	in.rec.RestoreAtStart = ""
	rec := in.rec
	in.mu.Unlock()
	if restoreAtStart {
		if err := m.opt.Store.Put(rec); err != nil {
			return err
		}
	}
	return hypervisor.RemoveState(stateDir)
}
