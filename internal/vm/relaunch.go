package vm

import (
	"context"
	"fmt"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/vmstate"
)

// Relaunch boots a stopped persistent VM again from its disk. A VM that is
// not stopped is ErrConflict.
func (m *Manager) Relaunch(ctx context.Context, hostname string, opt CreateOptions) (api.CreateNodeResponse, error) {
	in, err := m.restart(ctx, hostname, vmstate.Relaunch, "", opt)
	if err != nil {
		return api.CreateNodeResponse{}, err
	}
	return in.createResponse(), nil
}

// restart starts the machine of an existing VM with op, relaunch or
// restore: its disk as it is (a relaunch), or restored from the state
// directory restoreFrom when that is set. While it starts the VM is
// "creating", so a delete aborts it; if it fails the VM is left in the
// state it was in.
func (m *Manager) restart(ctx context.Context, hostname string, op vmstate.Op, restoreFrom string, opt CreateOptions) (*instance, error) {
	in, err := m.get(hostname)
	if err != nil {
		return nil, err
	}
	ctx, abort := context.WithCancel(ctx)
	defer abort()
	in.mu.Lock()
	from := in.rec.State
	if err := in.applyLocked(op); err != nil {
		in.mu.Unlock()
		return nil, err
	}
	in.created, in.abort = make(chan struct{}), abort
	g := m.groups[in.rec.Group]
	in.mu.Unlock()
	defer close(in.created)

	log := m.log.With("vm", hostname, "group", g.Name)
	var undo undoStack
	err = m.start(ctx, log, g, in, nil, restoreFrom, &undo)
	if err == nil {
		err = m.wait(ctx, in, opt)
	}
	if err != nil {
		err = m.fail(ctx, log, &undo, err)
		in.mu.Lock()
		// Undone: back where it was (a pause of the half-started
		// machine, under way, is lost with it).
		in.machine, in.agent, in.rec.State, in.busy = nil, nil, from, nil
		rec := in.rec
		in.mu.Unlock()
		if perr := m.opt.Store.Put(rec); perr != nil {
			log.Error("record vm state", "state", from, "err", perr)
		}
		return nil, err
	}
	undo.release()
	m.watch(in)
	log.Info("vm started again", "op", op)
	return in, nil
}

// EnsureCount brings every host group up to its config count: VMs declared
// by count are persistent and protected; stopped ones are relaunched and
// missing ones created. It is called at each daemon start, after Recover.
func (m *Manager) EnsureCount(ctx context.Context) error {
	for _, g := range m.opt.Config.HostGroups {
		want := g.VMCount()
		have := 0
		for _, in := range m.protected(g.Name) {
			have++
			in.mu.Lock()
			relaunch, host := vmstate.Allowed(vmstate.Relaunch, in.stateLocked()), in.rec.Hostname
			in.mu.Unlock()
			if relaunch {
				if _, err := m.Relaunch(ctx, host, CreateOptions{}); err != nil {
					return fmt.Errorf("relaunch %s: %w", host, err)
				}
			}
		}
		for ; have < want; have++ {
			resp, err := m.create(ctx, g, api.CreateNodeRequest{Persistent: true}, CreateOptions{}, true)
			if err != nil {
				return fmt.Errorf("launch host group %q vm %d of %d: %w", g.Name, have+1, want, err)
			}
			m.log.Info("launched config vm", "vm", resp.Hostname)
		}
	}
	return nil
}

// protected returns the config-declared VMs of group.
func (m *Manager) protected(group string) []*instance {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*instance
	for _, in := range m.vms {
		in.mu.Lock()
		if in.rec.Group == group && in.rec.Protected {
			out = append(out, in)
		}
		in.mu.Unlock()
	}
	return out
}
