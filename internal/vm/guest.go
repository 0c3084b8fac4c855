package vm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/agent"
	"github.com/openslicer/openslicer/internal/vmstate"
)

// healthTimeout bounds one health probe. Clients poll health in a loop, so
// a probe of a guest that is not up yet must give up rather than queue.
const healthTimeout = 3 * time.Second

// agentFor returns the agent client of a VM that can take the guest
// operation op: 404 for an unknown VM, 409 where the state table refuses
// op (paused, stopped, suspended, an operation under way), 503 while
// starting.
func (m *Manager) agentFor(hostname string, op vmstate.Op) (*agent.Client, error) {
	in, err := m.get(hostname)
	if err != nil {
		return nil, err
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if _, err := vmstate.Check(hostname, op, in.stateLocked()); err != nil {
		return nil, err
	}
	if in.agent == nil {
		return nil, fmt.Errorf("vm %q is starting: %w", hostname, api.ErrUnavailable)
	}
	in.lastAgent = time.Now().UTC()
	return in.agent, nil
}

// agentClient returns in's agent client (nil while it has none).
func (in *instance) agentClient() *agent.Client {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.agent
}

// Exec runs a command in the guest and returns the agent's NDJSON frame
// stream, to be passed through unchanged. stdin may be nil.
func (m *Manager) Exec(ctx context.Context, hostname string, req *api.ExecRequest, stdin io.Reader) (io.ReadCloser, error) {
	client, err := m.agentFor(hostname, vmstate.Exec)
	if err != nil {
		return nil, err
	}
	return client.Exec(ctx, req, stdin)
}

// ExecBuffered runs a command and returns its collected output.
func (m *Manager) ExecBuffered(ctx context.Context, hostname string, req *api.ExecRequest) (*api.ExecResult, error) {
	client, err := m.agentFor(hostname, vmstate.Exec)
	if err != nil {
		return nil, err
	}
	return client.ExecBuffered(ctx, req)
}

// Health asks the guest agent for its health; ErrUnavailable when it does
// not answer in time.
func (m *Manager) Health(ctx context.Context, hostname string) (*api.AgentHealthResponse, error) {
	client, err := m.agentFor(hostname, vmstate.Health)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, healthTimeout)
	defer cancel()
	h, err := client.Health(ctx)
	if err != nil {
		return nil, fmt.Errorf("vm %q: agent not reachable: %v: %w", hostname, err, api.ErrUnavailable)
	}
	h.Hostname = hostname
	return h, nil
}

// DefaultLogLines is how many console lines Logs returns when not asked.
const DefaultLogLines = 20

// Logs returns the last lines of the VM's serial console; lines == 0 means
// the whole file, lines < 0 the default.
func (m *Manager) Logs(hostname string, lines int) (api.LogsResponse, error) {
	in, err := m.get(hostname)
	if err != nil {
		return api.LogsResponse{}, err
	}
	if lines < 0 {
		lines = DefaultLogLines
	}
	in.mu.Lock()
	name := machineName(in.rec)
	in.mu.Unlock()
	data, err := os.ReadFile(m.logPath(name))
	if errors.Is(err, os.ErrNotExist) {
		return api.LogsResponse{}, fmt.Errorf("console log of vm %q: %w", hostname, api.ErrNotFound)
	}
	if err != nil {
		return api.LogsResponse{}, err
	}
	content := tailLines(data, lines)
	return api.LogsResponse{Hostname: hostname, Lines: bytes.Count(content, []byte("\n")), Content: string(content)}, nil
}

// tailLines returns the last n lines of data (all of it when n == 0).
func tailLines(data []byte, n int) []byte {
	if n == 0 {
		return data
	}
	end := len(data)
	if end > 0 && data[end-1] == '\n' {
		end--
	}
	for i := end - 1; i >= 0; i-- {
		if data[i] == '\n' {
			n--
			if n == 0 {
				return data[i+1:]
			}
		}
	}
	return data
}
