package vm

import (
	"net/http"
)

// GuestDo sends req to the agent of the VM and returns the agent's answer
// whatever its status, for the API to pass through: the guest operations
// (copy, file system, background exec) speak the public wire format on the
// agent's side already. A VM that is unknown, paused or not up yet is an
// error of the matching class, and nothing is sent.
func (m *Manager) GuestDo(hostname string, req *http.Request) (*http.Response, error) {
	client, err := m.agentFor(hostname)
	if err != nil {
		return nil, err
	}
	return client.Do(req)
}
