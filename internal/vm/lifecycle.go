package vm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/agent"
	"github.com/openslicer/openslicer/internal/hypervisor"
	"github.com/openslicer/openslicer/internal/network"
	"github.com/openslicer/openslicer/internal/store"
	"github.com/openslicer/openslicer/internal/vmstate"
)

// Delete stops the VM hostname of group and removes it with its disk. A VM
// still being created is aborted, and its create unwinds. It reports
// whether the disk was removed.
func (m *Manager) Delete(ctx context.Context, group, hostname string) (bool, error) {
	in, err := m.get(hostname)
	if err != nil {
		return false, err
	}
	in.mu.Lock()
	rec := in.rec
	in.mu.Unlock()
	if group != "" && rec.Group != group {
		return false, fmt.Errorf("vm %q is not in host group %q: %w", hostname, group, api.ErrNotFound)
	}
	if rec.Protected {
		return false, fmt.Errorf("vm %q is declared by the config (count) and cannot be deleted: %w", hostname, api.ErrForbidden)
	}
	select {
	case <-in.created:
	default:
		in.abort()
		<-in.created
	}
	if _, err := m.get(hostname); err != nil {
		m.log.Info("vm deleted during create", "vm", hostname)
		return true, nil // the create unwound everything
	}
	if err := m.teardown(ctx, in); err != nil {
		return false, err
	}
	m.log.Info("vm deleted", "vm", hostname)
	return true, nil
}

// teardown stops the machine and removes the disk, run directory and
// record of in. It runs at most once per instance, in any state (the
// table's delete: the API's, an ephemeral VM's exit, a reclaim), a state
// this daemon does not know included.
func (m *Manager) teardown(ctx context.Context, in *instance) error {
	in.mu.Lock()
	if in.removed {
		in.mu.Unlock()
		return nil
	}
	in.removed, in.busy = true, nil // Gone: a claim under way is lost
	rec, machine, client := in.rec, in.machine, in.agent
	if in.endLife != nil {
		in.endLife()
	}
	in.mu.Unlock()

	ctx = context.WithoutCancel(ctx)
	var errs []error
	if client != nil {
		client.Close()
	}
	if machine != nil {
		if err := machine.Kill(ctx); err != nil {
			errs = append(errs, fmt.Errorf("kill machine: %w", err))
		}
	}
	errs = append(errs, m.networkDown(ctx, in))
	name := machineName(rec)
	errs = append(errs, removeFile(rec.Disk), hypervisor.RemoveState(m.statePath(name)), removeFile(m.planPath(name)),
		removeFile(rec.Disk+".tmp"), removeFile(m.planPath(name)+".tmp"), // of a create cut short by a crash
		os.RemoveAll(rec.RunDir), m.opt.Store.Delete(rec.Hostname))
	if rec.Pool {
		// A pool VM that never became a node: nobody will read its console.
		errs = append(errs, removeFile(m.logPath(name)))
	}
	m.mu.Lock()
	delete(m.vms, rec.Hostname)
	delete(m.pooled, rec.Hostname)
	m.mu.Unlock()
	m.kickPools() // memory, or a pool's place, was freed
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove vm %q: %w", rec.Hostname, err)
	}
	return nil
}

// watch reaps in when its machine exits on its own (poweroff, reboot,
// panic): see exited.
func (m *Manager) watch(in *instance) {
	in.mu.Lock()
	machine := in.machine
	in.mu.Unlock()
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		select {
		case <-machine.Done():
		case <-m.closing:
			return // the daemon is stopping: Close decides the VM's fate
		}
		m.exited(in, machine)
	}()
}

// exited deals with the exit of machine, in's machine: an ephemeral VM is
// removed with its disk; a persistent one is kept, stopped, with its disk.
// Nothing is done when the table refuses the exit (the VM is being
// suspended, and the exit is the suspend's; it was deleted or detached),
// or when in has been started again since (a quick restore), which this
// exit must not touch.
func (m *Manager) exited(in *instance, machine hypervisor.Machine) {
	in.mu.Lock()
	rec, current := in.rec, in.machine
	allowed := vmstate.Allowed(vmstate.Exit, in.stateLocked())
	in.mu.Unlock()
	if current != machine || !allowed {
		return
	}
	log := m.log.With("vm", rec.Hostname)
	if !rec.Persistent {
		log.Info("vm exited: removing ephemeral vm")
		if err := m.teardown(context.Background(), in); err != nil {
			log.Error("reap vm", "err", err)
		}
		return
	}
	log.Info("vm exited: persistent vm kept stopped")
	if err := m.keepStopped(context.Background(), in, machine); err != nil {
		log.Error("record stopped vm", "err", err)
	}
}

// reclaimAtClose removes this daemon's network objects that no VM left
// running needs, group bridges included, so that a stopped daemon leaves
// only what its detached VMs use. Another daemon's objects are never
// touched: the network host reclaims only its own instance's.
func (m *Manager) reclaimAtClose(ctx context.Context) error {
	if m.opt.Network == nil {
		return nil
	}
	liveVMs, liveGroups := map[string]bool{}, map[string]bool{}
	m.mu.Lock()
	for _, rec := range m.leftAlone {
		liveVMs[machineName(rec)], liveGroups[rec.Group] = true, true
	}
	for _, in := range m.vms {
		in.mu.Lock()
		if in.plan != nil && in.machine != nil {
			liveVMs[machineName(in.rec)], liveGroups[in.rec.Group] = true, true
		}
		in.mu.Unlock()
	}
	m.mu.Unlock()
	keepVM := func(vm string) bool { return liveVMs[vm] }
	keepGroup := func(g string) bool { return liveGroups[g] }
	return m.opt.Network.Reclaim(context.WithoutCancel(ctx), keepVM, keepGroup)
}

// Recover reconciles the store with what is running after a daemon start:
// commits cut short are undone first (recoverCommits); records of VMs
// caught mid-create, whose create was never answered or whose fork was
// never finished, and of ephemeral VMs, are reclaimed with their
// processes, disks and sockets;
// persistent VMs still running are re-attached, and those that are gone are
// kept as stopped. Each VM is handled by the backend its record names; a
// VM whose backend this daemon does not have is left alone (record, disk,
// processes and network kept, not listed) and reported in the error.
func (m *Manager) Recover(ctx context.Context) error {
	// Commits first: a commit cut short gives its source's disk back.
	captured, commitErr := m.recoverCommits()
	if commitErr != nil {
		m.log.Error("recover commits", "err", commitErr)
	}
	if err := m.recoverTemplates(ctx); err != nil {
		m.log.Error("recover snapshot templates", "err", err)
		commitErr = errors.Join(commitErr, err)
	}
	recs, err := m.opt.Store.List()
	if err != nil {
		return err
	}
	errs := []error{commitErr}
	live := map[string]bool{} // VMs whose machine runs with a network
	for _, rec := range recs {
		backend, err := m.backendFor(rec)
		if err != nil {
			m.log.Error("vm left alone: its backend is not in this daemon", "vm", rec.Hostname, "backend", m.backendName(rec), "err", err)
			errs = append(errs, fmt.Errorf("vm left alone: %w", err))
			m.mu.Lock()
			m.leftAlone = append(m.leftAlone, rec)
			m.mu.Unlock()
			live[machineName(rec)] = true
			continue
		}
		rec.Backend = backend.Name() // a record from before records named it
		in := &instance{rec: rec, created: make(chan struct{}), abort: func() {}}
		close(in.created)
		plan, err := m.readPlan(machineName(rec))
		errs = append(errs, err)
		in.plan = plan
		in.machine = m.attach(ctx, backend, rec)
		_, known := m.groups[rec.Group]
		if rec.State == vmstate.Creating || rec.Unanswered || rec.Unfinished || !rec.Persistent || !known {
			m.log.Info("reclaiming vm left by an earlier daemon", "vm", rec.Hostname, "state", rec.State, "unanswered", rec.Unanswered, "unfinished", rec.Unfinished)
			if plan != nil && plan.Naming == network.NamingInstance {
				in.plan = nil // its network goes with every other leftover, in one pass below
			} // a plan from before instance ids: that pass does not see its objects, its teardown does
			// A start cut short by the crash has processes but no handle.
			errs = append(errs, backend.Reclaim(ctx, rec.RunDir), m.teardown(ctx, in))
			continue
		}
		m.mu.Lock()
		m.vms[rec.Hostname] = in
		m.mu.Unlock()
		if in.machine == nil {
			// Its machine is gone: an exit, as if it had been seen
			// (a stopped or suspended VM has none to lose).
			in.mu.Lock()
			err := in.applyLocked(vmstate.Exit)
			rec := in.rec
			in.mu.Unlock()
			if err == nil {
				errs = append(errs, m.opt.Store.Put(rec))
			}
			continue
		}
		if plan != nil && m.opt.Network != nil {
			live[machineName(rec)] = true
			// Applied again: what an earlier daemon left half-done, or a
			// rule removed by hand, is put right.
			if _, err := m.opt.Network.Setup(ctx, *plan); err != nil {
				errs = append(errs, fmt.Errorf("re-apply network of %s: %w", rec.Hostname, err))
			}
		}
		if captured[rec.Hostname] && rec.State == vmstate.Running {
			// A capture cut short may have left the vCPUs stopped.
			if err := in.machine.Resume(ctx); err != nil {
				errs = append(errs, fmt.Errorf("run %s again after a memory commit cut short: %w", rec.Hostname, err))
			}
		}
		life, endLife := context.WithCancel(context.WithoutCancel(ctx))
		in.agent, in.endLife = m.newAgent(in, in.machine), endLife
		in.delivered = m.deliverBootData(life, in, in.agent, nil, agent.FirstBoot{Userdata: rec.Userdata, SSHKeys: rec.SSHKeys})
		m.log.Info("re-attached persistent vm", "vm", rec.Hostname, "backend", backend.Name())
		m.watch(in)
	}
	errs = append(errs, m.reclaimNetwork(ctx, live))
	return errors.Join(errs...)
}

// attach re-adopts the machine of rec through backend, the one that runs
// it, or returns nil when it is gone.
func (m *Manager) attach(ctx context.Context, backend hypervisor.Backend, rec store.VM) hypervisor.Machine {
	h := hypervisor.Handle{Backend: backend.Name(), RunDir: rec.RunDir}
	if len(rec.Machine) > 0 {
		if err := json.Unmarshal(rec.Machine, &h); err != nil {
			m.log.Warn("bad machine handle in store", "vm", rec.Hostname, "err", err)
		}
	}
	machine, err := backend.Attach(ctx, h)
	if err != nil {
		if !errors.Is(err, api.ErrNotFound) {
			m.log.Warn("re-attach vm", "vm", rec.Hostname, "err", err)
		}
		return nil
	}
	return machine
}
