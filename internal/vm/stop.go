package vm

import (
	"context"
	"errors"
	"time"

	"github.com/openslicer/openslicer/internal/hypervisor"
	"github.com/openslicer/openslicer/internal/vmstate"
)

// StopMode is what Close does with the VMs that run when the daemon stops.
// Ephemeral VMs are removed with their disks in every mode.
type StopMode int

const (
	// StopShutDown stops every VM: through the guest first when the
	// config says graceful_shutdown (waiting up to ShutdownTimeout, all
	// VMs at once), killed otherwise. Persistent VMs are kept, stopped,
	// with their disks: config count VMs are relaunched at the next start,
	// API-launched ones stay stopped until relaunched.
	StopShutDown StopMode = iota
	// StopSuspend suspends running persistent VMs (memory and devices saved
	// to disk, as POST /vm/{h}/suspend does); the next start restores them
	// (RestoreSuspended). A VM that cannot be suspended is stopped as with
	// StopShutDown.
	StopSuspend
	// StopDetach leaves persistent VMs running for the next daemon to
	// re-attach, as after a crash: for upgrading the daemon.
	StopDetach
)

// DefaultShutdownTimeout is how long a graceful daemon stop waits for
// guests to power off before killing them: a little under systemd's
// TimeoutStopSec=120 (what `slicer service generate` uses), so the daemon
// has finished before systemd would kill it.
const DefaultShutdownTimeout = 110 * time.Second

// stopAction is what Close does with one VM.
type stopAction int

const (
	stopLeave   stopAction = iota // nothing runs: the VM stays as it is (stopped or suspended)
	stopRemove                    // stopped if running, then removed with its disk
	stopKeep                      // stopped, kept stopped with its disk
	stopSuspend                   // suspended, restored at the next start
	stopDetach                    // left running, re-attached by the next daemon
)

// stopActionFor decides the fate of a VM at daemon stop from the mode, its
// persistence and whether its machine runs (running or paused).
func stopActionFor(mode StopMode, persistent, running bool) stopAction {
	switch {
	case !persistent:
		return stopRemove
	case !running:
		return stopLeave
	case mode == StopSuspend:
		return stopSuspend
	case mode == StopDetach:
		return stopDetach
	default:
		return stopKeep
	}
}

// Close is called when the daemon stops: creates in flight are aborted
// (and unwind), then every VM is dealt with as mode says, all at once.
// Afterwards the network objects no running VM needs are removed.
func (m *Manager) Close(ctx context.Context, mode StopMode) error {
	m.mu.Lock()
	insts := make([]*instance, 0, len(m.vms))
	for _, in := range m.vms {
		insts = append(insts, in)
	}
	m.mu.Unlock()
	m.closeOnce.Do(func() { close(m.closing) })
	poolErr := make(chan error, 1)
	go func() { poolErr <- m.drainPools(ctx) }()
	err := allAtOnce(insts, func(in *instance) error {
		in.abort()
		<-in.created
		return m.stopAtClose(ctx, in, mode)
	})
	errs := []error{err, <-poolErr}
	m.wg.Wait()
	errs = append(errs, m.reclaimAtClose(ctx))
	return errors.Join(errs...)
}

// stopAtClose deals with one VM at daemon stop.
func (m *Manager) stopAtClose(ctx context.Context, in *instance, mode StopMode) error {
	in.mu.Lock()
	rec, machine, removed := in.rec, in.machine, in.removed
	in.mu.Unlock()
	if removed {
		return nil
	}
	if _, err := m.get(rec.Hostname); err != nil {
		return nil // its create was aborted and unwound
	}
	log := m.log.With("vm", rec.Hostname)
	switch stopActionFor(mode, rec.Persistent, machine != nil) {
	case stopLeave:
		return nil
	case stopDetach:
		in.mu.Lock()
		running := in.stateLocked() == vmstate.Running
		if err := in.applyLocked(vmstate.Detach); err != nil {
			in.mu.Unlock()
			return err
		}
		in.removed = true // this daemon is done with it: nothing may tear it down
		if in.endLife != nil {
			in.endLife()
		}
		client := in.agent
		in.mu.Unlock()
		if client != nil && !running {
			client.Close() // a paused guest could not answer a release
		} else if client != nil {
			dctx, cancel := context.WithTimeout(ctx, releaseTimeout)
			client.Detach(dctx)
			cancel()
		}
		log.Info("vm left running for the next daemon")
		return nil
	case stopRemove:
		if machine != nil {
			m.stopMachine(ctx, in)
		}
		return m.teardown(ctx, in)
	case stopSuspend:
		err := m.suspend(ctx, in, true)
		if err == nil {
			log.Info("vm suspended at daemon stop: the next start restores it")
			return nil
		}
		log.Warn("suspend at daemon stop failed: stopping the vm instead", "err", err)
	}
	// stopKeep, or a suspend that failed.
	m.stopMachine(ctx, in)
	if err := m.keepStopped(ctx, in, machine); err != nil {
		return err
	}
	log.Info("vm stopped with the daemon", "graceful", m.opt.Config.Graceful())
	return nil
}

// stopMachine stops the machine of in and waits for it to exit: asked to
// power off through its agent and by ACPI when the config says
// graceful_shutdown, and killed once ShutdownTimeout has passed; killed at
// once otherwise.
func (m *Manager) stopMachine(ctx context.Context, in *instance) {
	in.mu.Lock()
	machine, client, host, paused := in.machine, in.agent, in.rec.Hostname, vmstate.Allowed(vmstate.Resume, in.stateLocked())
	in.mu.Unlock()
	if machine == nil {
		return
	}
	if !m.opt.Config.Graceful() {
		if err := machine.Kill(context.WithoutCancel(ctx)); err != nil {
			m.log.Warn("kill vm", "vm", host, "err", err)
		}
		return
	}
	if paused {
		if err := m.setPaused(ctx, in, vmstate.Resume); err != nil {
			m.log.Warn("resume paused vm to power it off", "vm", host, "err", err)
		}
	}
	// A guest whose agent cannot be asked (still booting, or not ours)
	// may still honour the power button; one that honours both stops once.
	go machine.Shutdown(context.WithoutCancel(ctx))
	m.stopGuest(ctx, host, machine, client, ActionShutdown, m.shutdownTimeout())
}

// keepStopped records a persistent VM whose machine has exited as stopped,
// with its network torn down, unless it has been started again meanwhile
// (its machine is no longer exited).
func (m *Manager) keepStopped(ctx context.Context, in *instance, exited hypervisor.Machine) error {
	// Before it is marked stopped, so a relaunch finds nothing of it.
	if err := m.networkDown(ctx, in); err != nil {
		m.log.Error("tear down network of stopped vm", "vm", in.rec.Hostname, "err", err)
	}
	in.mu.Lock()
	if in.machine != exited || in.applyLocked(vmstate.Exit) != nil {
		in.mu.Unlock()
		return nil // started again, suspended or deleted meanwhile
	}
	in.machine, in.busy = nil, nil // a claim under way is lost
	if in.endLife != nil {
		in.endLife()
	}
	if in.agent != nil {
		in.agent.Close()
		in.agent = nil
	}
	rec := in.rec
	in.mu.Unlock()
	m.kickPools() // its memory is free
	return m.opt.Store.Put(rec)
}

func (m *Manager) shutdownTimeout() time.Duration {
	if m.opt.ShutdownTimeout > 0 {
		return m.opt.ShutdownTimeout
	}
	return DefaultShutdownTimeout
}

// RestoreSuspended restores the VMs the previous daemon suspended as it
// stopped (StopSuspend), all at once, paused again if they were paused. It
// is called at start, after Recover and before EnsureCount. A VM that
// cannot be restored stays suspended, and is tried again at the next start.
func (m *Manager) RestoreSuspended(ctx context.Context) error {
	m.mu.Lock()
	var insts []*instance
	for _, in := range m.vms {
		in.mu.Lock()
		if in.rec.RestoreAtStart != "" && vmstate.Allowed(vmstate.Restore, in.stateLocked()) {
			insts = append(insts, in)
		}
		in.mu.Unlock()
	}
	m.mu.Unlock()
	return allAtOnce(insts, func(in *instance) error { return m.restoreAtStart(ctx, in) })
}

func (m *Manager) restoreAtStart(ctx context.Context, in *instance) error {
	in.mu.Lock()
	host, to := in.rec.Hostname, in.rec.RestoreAtStart
	in.mu.Unlock()
	if err := m.Restore(ctx, host, CreateOptions{}); err != nil {
		return err
	}
	if to == vmstate.Paused {
		if err := m.Pause(ctx, host); err != nil {
			return err
		}
	}
	m.log.Info("vm suspended at the last daemon stop restored", "vm", host, "state", to)
	return nil
}
