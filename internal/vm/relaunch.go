package vm

import (
	"context"
	"fmt"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/store"
)

// Relaunch boots a stopped persistent VM again from its disk. A VM that is
// not stopped is ErrConflict.
func (m *Manager) Relaunch(ctx context.Context, hostname string, opt CreateOptions) (api.CreateNodeResponse, error) {
	in, err := m.restart(ctx, hostname, "relaunch", store.StateStopped, "", opt)
	if err != nil {
		return api.CreateNodeResponse{}, err
	}
	return in.createResponse(), nil
}

// restart starts the machine of an existing VM that is in state from: its
// disk as it is (a relaunch), or restored from the state directory
// restoreFrom when that is set. While it starts the VM is "creating", so a delete aborts it; if it
// fails the VM is left in state from.
func (m *Manager) restart(ctx context.Context, hostname, verb, from, restoreFrom string, opt CreateOptions) (*instance, error) {
	in, err := m.get(hostname)
	if err != nil {
		return nil, err
	}
	ctx, abort := context.WithCancel(ctx)
	defer abort()
	in.mu.Lock()
	if in.rec.State != from || in.removed {
		state := stateLabel(in.rec.State)
		in.mu.Unlock()
		return nil, fmt.Errorf("%s vm %q: it is %s: %w", verb, hostname, state, api.ErrConflict)
	}
	in.rec.State, in.created, in.abort = store.StateCreating, make(chan struct{}), abort
	g := m.groups[in.rec.Group]
	in.mu.Unlock()
	defer close(in.created)

	log := m.log.With("vm", hostname, "group", g.Name)
	var undo undoStack
	err = m.start(ctx, log, g, in, false, restoreFrom, &undo)
	if err == nil {
		err = m.wait(ctx, in, opt)
	}
	if err != nil {
		err = m.fail(ctx, log, &undo, err)
		in.mu.Lock()
		in.machine, in.agent, in.rec.State = nil, nil, from
		rec := in.rec
		in.mu.Unlock()
		if perr := m.opt.Store.Put(rec); perr != nil {
			log.Error("record vm state", "state", from, "err", perr)
		}
		return nil, err
	}
	undo.release()
	m.watch(in)
	log.Info("vm started again", "op", verb)
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
			stopped, host := in.rec.State == store.StateStopped, in.rec.Hostname
			in.mu.Unlock()
			if stopped {
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
