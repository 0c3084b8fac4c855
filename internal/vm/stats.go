package vm

import (
	"context"
	"fmt"
	"sync"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/vmstate"
)

// Stats returns a resource snapshot from the guest of hostname, or of every
// VM when hostname is empty. A VM whose agent cannot answer (paused,
// stopped, starting) has a nil snapshot and the reason in Error.
func (m *Manager) Stats(ctx context.Context, hostname string) ([]api.NodeStat, error) {
	var nodes []api.Node
	if hostname != "" {
		in, err := m.get(hostname)
		if err != nil {
			return nil, err
		}
		nodes = []api.Node{in.node()}
	} else {
		nodes, _ = m.List(Filter{})
	}
	out := make([]api.NodeStat, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		out[i] = api.NodeStat{Hostname: n.Hostname, IP: n.IP, CreatedAt: n.CreatedAt}
		wg.Add(1)
		go func() {
			defer wg.Done()
			snap, err := m.snapshot(ctx, n.Hostname)
			if err != nil {
				out[i].Error = err.Error()
				return
			}
			out[i].Snapshot = snap
		}()
	}
	wg.Wait()
	return out, nil
}

func (m *Manager) snapshot(ctx context.Context, hostname string) (*api.Snapshot, error) {
	client, err := m.agentFor(hostname, vmstate.Stats)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, healthTimeout)
	defer cancel()
	snap, err := client.Stats(ctx)
	if err != nil {
		return nil, fmt.Errorf("vm %q: agent not reachable: %v", hostname, err)
	}
	return snap, nil
}
