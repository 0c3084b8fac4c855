package vm

import (
	"fmt"
	"net/http"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/vmstate"
)

// GuestDo sends req to the agent of the VM and returns the agent's answer
// whatever its status, for the API to pass through: the guest operations
// (copy, file system, background exec) speak the public wire format on the
// agent's side already. A VM that is unknown, paused or not up yet is an
// error of the matching class, and nothing is sent; an agent that gives no
// answer is ErrUnavailable.
func (m *Manager) GuestDo(hostname string, req *http.Request) (*http.Response, error) {
	client, err := m.agentFor(hostname, vmstate.Guest)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		// No answer at all from the agent: the stream broke, or the
		// request was cancelled. Either way it is not a success.
		return nil, fmt.Errorf("vm %q: agent did not answer: %w: %w", hostname, err, api.ErrUnavailable)
	}
	return resp, nil
}
