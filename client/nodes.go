package client

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/openslicer/openslicer/api"
)

// Wait values for CreateOptions.Wait and Restore.
const (
	WaitAgent    = "agent"
	WaitUserdata = "userdata"
)

// ListOptions filters node lists. Tag is an exact tag ("name=web");
// TagPrefix matches tags starting with it. The daemon accepts one of them.
type ListOptions struct {
	Tag       string
	TagPrefix string
}

func (o ListOptions) query() url.Values {
	q := url.Values{}
	if o.Tag != "" {
		q.Set("tag", o.Tag)
	}
	if o.TagPrefix != "" {
		q.Set("tag_prefix", o.TagPrefix)
	}
	return q
}

// CreateOptions asks CreateNode to wait until the new VM's agent answers
// (WaitAgent) or its userdata has run (WaitUserdata). Timeout bounds the
// wait on the daemon's side; zero means the daemon's default.
type CreateOptions struct {
	Wait    string
	Timeout time.Duration
}

// Info returns the daemon's version and platform (GET /info).
func (c *Client) Info(ctx context.Context) (*api.Info, error) {
	var info api.Info
	if err := c.call(ctx, http.MethodGet, nil, nil, &info, "info"); err != nil {
		return nil, err
	}
	return &info, nil
}

// HealthZ checks that the daemon answers (GET /healthz, no auth needed).
func (c *Client) HealthZ(ctx context.Context) error {
	return c.call(ctx, http.MethodGet, nil, nil, nil, "healthz")
}

// ShutdownDaemon asks the daemon to shut down as on SIGTERM (POST
// /daemon/shutdown). It returns once the daemon has accepted (202).
func (c *Client) ShutdownDaemon(ctx context.Context) error {
	return c.call(ctx, http.MethodPost, nil, nil, nil, "daemon", "shutdown")
}

// DetachDaemon stops the daemon but leaves its persistent VMs running, for
// the next daemon to re-attach (POST /daemon/shutdown?detach=true, an
// OpenSlicer extension for upgrading the daemon). Ephemeral VMs are removed
// as on any stop. It returns once the daemon has accepted (202).
func (c *Client) DetachDaemon(ctx context.Context) error {
	return c.call(ctx, http.MethodPost, url.Values{"detach": {"true"}}, nil, nil, "daemon", "shutdown")
}

// HostGroups lists the host groups (GET /hostgroup).
func (c *Client) HostGroups(ctx context.Context) ([]api.HostGroup, error) {
	var groups []api.HostGroup
	if err := c.call(ctx, http.MethodGet, nil, nil, &groups, "hostgroup"); err != nil {
		return nil, err
	}
	return groups, nil
}

// ListNodes lists the VMs of every group (GET /nodes).
func (c *Client) ListNodes(ctx context.Context, opts ListOptions) ([]api.Node, error) {
	var nodes []api.Node
	if err := c.call(ctx, http.MethodGet, opts.query(), nil, &nodes, "nodes"); err != nil {
		return nil, err
	}
	return nodes, nil
}

// GroupNodes lists the VMs of one group (GET /hostgroup/{group}/nodes).
func (c *Client) GroupNodes(ctx context.Context, group string, opts ListOptions) ([]api.Node, error) {
	var nodes []api.Node
	if err := c.call(ctx, http.MethodGet, opts.query(), nil, &nodes, "hostgroup", group, "nodes"); err != nil {
		return nil, err
	}
	return nodes, nil
}

// CreateNode launches a VM in group (POST /hostgroup/{group}/nodes). An
// empty group means the only configured group; it is an error when there
// are none or several.
func (c *Client) CreateNode(ctx context.Context, group string, req api.CreateNodeRequest, opts CreateOptions) (*api.CreateNodeResponse, error) {
	q, err := waitQuery(opts.Wait, opts.Timeout, WaitAgent, WaitUserdata)
	if err != nil {
		return nil, err
	}
	if group == "" {
		if group, err = c.onlyGroup(ctx); err != nil {
			return nil, err
		}
	}
	var resp api.CreateNodeResponse
	if err := c.call(ctx, http.MethodPost, q, req, &resp, "hostgroup", group, "nodes"); err != nil {
		return nil, err
	}
	return &resp, nil
}

// waitQuery encodes wait and timeout, rejecting a wait value not in allowed.
func waitQuery(wait string, timeout time.Duration, allowed ...string) (url.Values, error) {
	q := url.Values{}
	if wait == "" {
		return q, nil
	}
	ok := false
	for _, a := range allowed {
		ok = ok || wait == a
	}
	if !ok {
		return nil, fmt.Errorf("%w: wait %q: want one of %s", api.ErrInvalid, wait, strings.Join(allowed, ", "))
	}
	q.Set("wait", wait)
	if timeout > 0 {
		q.Set("timeout", timeout.String())
	}
	return q, nil
}

// onlyGroup returns the name of the one configured host group.
func (c *Client) onlyGroup(ctx context.Context) (string, error) {
	groups, err := c.HostGroups(ctx)
	if err != nil {
		return "", fmt.Errorf("find the host group: %w", err)
	}
	return pickGroup(groups)
}

func pickGroup(groups []api.HostGroup) (string, error) {
	switch len(groups) {
	case 0:
		return "", fmt.Errorf("no host groups configured")
	case 1:
		return groups[0].Name, nil
	}
	names := make([]string, len(groups))
	for i, g := range groups {
		names[i] = g.Name
	}
	return "", fmt.Errorf("%w: host group is required when more than one is configured (have: %s)", api.ErrInvalid, strings.Join(names, ", "))
}

// DeleteNode deletes a VM (DELETE /hostgroup/{group}/nodes/{hostname}).
// An "error" field in a 2xx body is returned as an error.
func (c *Client) DeleteNode(ctx context.Context, group, hostname string) (*api.DeleteResponse, error) {
	var resp api.DeleteResponse
	if err := c.call(ctx, http.MethodDelete, nil, nil, &resp, "hostgroup", group, "nodes", hostname); err != nil {
		return nil, err
	}
	if resp.Error != "" {
		return &resp, fmt.Errorf("delete %s: %s", hostname, resp.Error)
	}
	return &resp, nil
}

// Describe returns a VM's details (GET /vm/{hostname}).
func (c *Client) Describe(ctx context.Context, hostname string) (*api.VMDescription, error) {
	var d api.VMDescription
	if err := c.call(ctx, http.MethodGet, nil, nil, &d, "vm", hostname); err != nil {
		return nil, err
	}
	return &d, nil
}

// Tags returns a VM's tags (GET /vm/{hostname}/tags).
func (c *Client) Tags(ctx context.Context, hostname string) (*api.VMTags, error) {
	var t api.VMTags
	if err := c.call(ctx, http.MethodGet, nil, nil, &t, "vm", hostname, "tags"); err != nil {
		return nil, err
	}
	return &t, nil
}

// UpdateTags changes a VM's tags atomically (PATCH /vm/{hostname}/tags) and
// returns the full tag state after the change.
func (c *Client) UpdateTags(ctx context.Context, hostname string, update api.VMTagUpdate) (*api.VMTags, error) {
	var t api.VMTags
	if err := c.call(ctx, http.MethodPatch, nil, update, &t, "vm", hostname, "tags"); err != nil {
		return nil, err
	}
	return &t, nil
}
