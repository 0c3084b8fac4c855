package vm

import (
	"context"
	"net"
	"net/url"

	"github.com/openslicer/openslicer/internal/vmstate"
)

// Shell starts an interactive shell in a VM's guest; q holds uid, gid,
// shell and cwd as the public shell endpoint takes them. The returned
// connection carries shell frames both ways (api/shellframe) until the
// guest sends a session close and EOF; closing it hangs the shell up.
// Errors come before anything runs: 404 unknown VM, 409 paused or
// stopped, 503 starting, or the agent's own (400 bad query or shell).
// ctx bounds opening only.
func (m *Manager) Shell(ctx context.Context, hostname string, q url.Values) (net.Conn, error) {
	client, err := m.agentFor(hostname, vmstate.Shell)
	if err != nil {
		return nil, err
	}
	return client.OpenShell(ctx, q)
}

// Forward connects to upstream (host:port or unix:/path) inside a VM's
// guest and returns a connection carrying its bytes both ways. Errors are
// those of Shell, plus 400 for a malformed upstream and 503
// (api.ErrUnavailable) for one the guest cannot reach. ctx bounds opening
// only.
func (m *Manager) Forward(ctx context.Context, hostname, upstream string) (net.Conn, error) {
	client, err := m.agentFor(hostname, vmstate.Forward)
	if err != nil {
		return nil, err
	}
	return client.DialForward(ctx, upstream)
}
