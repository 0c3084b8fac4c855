package client

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/openslicer/openslicer/api"
)

// Shutdown actions.
const (
	ActionReboot   = "reboot"
	ActionShutdown = "shutdown"
)

// Health returns the guest agent's health (GET /vm/{hostname}/health).
func (c *Client) Health(ctx context.Context, hostname string) (*api.AgentHealthResponse, error) {
	var h api.AgentHealthResponse
	if err := c.call(ctx, http.MethodGet, nil, nil, &h, "vm", hostname, "health"); err != nil {
		return nil, err
	}
	return &h, nil
}

// Ready reports whether a VM's agent answers (HEAD /vm/{hostname}/health).
// A 2xx is ready. A 5xx or 409 (the agent is not up yet, or the VM is
// paused) is not ready, without an error, so callers can poll. Any other
// status (unknown VM, bad auth) or a transport failure is an error.
func (c *Client) Ready(ctx context.Context, hostname string) (bool, error) {
	err := c.call(ctx, http.MethodHead, nil, nil, nil, "vm", hostname, "health")
	if err == nil {
		return true, nil
	}
	var apiErr *api.Error
	if errors.As(err, &apiErr) && (apiErr.StatusCode >= 500 || apiErr.StatusCode == http.StatusConflict) {
		return false, nil
	}
	return false, err
}

// Logs returns the last lines of a VM's serial console log (GET
// /vm/{hostname}/logs). lines 0 asks for the whole log; a negative value
// leaves the choice to the daemon (20 lines).
func (c *Client) Logs(ctx context.Context, hostname string, lines int) (*api.LogsResponse, error) {
	q := url.Values{}
	if lines >= 0 {
		q.Set("lines", strconv.Itoa(lines))
	}
	var l api.LogsResponse
	if err := c.call(ctx, http.MethodGet, q, nil, &l, "vm", hostname, "logs"); err != nil {
		return nil, err
	}
	return &l, nil
}

// Stats returns resource usage: of every VM when hostname is empty (GET
// /nodes/stats), else of one (GET /node/{hostname}/stats).
func (c *Client) Stats(ctx context.Context, hostname string) ([]api.NodeStat, error) {
	segs := []string{"nodes", "stats"}
	if hostname != "" {
		segs = []string{"node", hostname, "stats"}
	}
	var stats []api.NodeStat
	if err := c.call(ctx, http.MethodGet, nil, nil, &stats, segs...); err != nil {
		return nil, err
	}
	return stats, nil
}

// Shutdown stops or reboots a VM (POST /vm/{hostname}/shutdown). An empty
// action leaves the choice to the daemon.
func (c *Client) Shutdown(ctx context.Context, hostname, action string) error {
	q := url.Values{}
	if action != "" {
		q.Set("action", action)
	}
	return c.call(ctx, http.MethodPost, q, nil, nil, "vm", hostname, "shutdown")
}

// Pause freezes a VM's vCPUs (POST /vm/{hostname}/pause).
func (c *Client) Pause(ctx context.Context, hostname string) error {
	return c.call(ctx, http.MethodPost, nil, nil, nil, "vm", hostname, "pause")
}

// Resume thaws a paused VM (POST /vm/{hostname}/resume).
func (c *Client) Resume(ctx context.Context, hostname string) error {
	return c.call(ctx, http.MethodPost, nil, nil, nil, "vm", hostname, "resume")
}

// Suspend snapshots a VM and stops it (POST /vm/{hostname}/suspend).
func (c *Client) Suspend(ctx context.Context, hostname string) error {
	return c.call(ctx, http.MethodPost, nil, nil, nil, "vm", hostname, "suspend")
}

// Restore resumes a suspended VM from its snapshot (POST
// /vm/{hostname}/restore). wait may be "" or WaitAgent; timeout bounds the
// wait on the daemon's side (zero: the daemon's default).
func (c *Client) Restore(ctx context.Context, hostname, wait string, timeout time.Duration) error {
	q, err := waitQuery(wait, timeout, WaitAgent)
	if err != nil {
		return err
	}
	return c.call(ctx, http.MethodPost, q, nil, nil, "vm", hostname, "restore")
}

// Relaunch boots a stopped persistent VM again with its existing disk
// (POST /vm/{hostname}/relaunch).
func (c *Client) Relaunch(ctx context.Context, hostname string) (*api.CreateNodeResponse, error) {
	var resp api.CreateNodeResponse
	if err := c.call(ctx, http.MethodPost, nil, nil, &resp, "vm", hostname, "relaunch"); err != nil {
		return nil, err
	}
	return &resp, nil
}
