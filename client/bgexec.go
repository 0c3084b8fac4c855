package client

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/openslicer/openslicer/api"
)

// ExecBackground starts a detached command in a VM (POST
// /vm/{hostname}/exec?background=true) and returns its id. Output is kept
// in a ring buffer in the guest; read it with ExecLogs.
func (c *Client) ExecBackground(ctx context.Context, hostname string, req *api.ExecRequest) (*api.ExecBackgroundResponse, error) {
	if req == nil || req.Command == "" {
		return nil, fmt.Errorf("%w: exec needs a command", api.ErrInvalid)
	}
	r := *req
	r.Background, r.Buffered, r.Stdin = true, false, false
	r.Stdio = api.StdioBase64
	var res api.ExecBackgroundResponse
	if err := c.call(ctx, http.MethodPost, r.Query(), nil, &res, "vm", hostname, "exec"); err != nil {
		return nil, err
	}
	return &res, nil
}

// ExecList returns the background execs of a VM, running or exited but
// not yet removed (GET /vm/{hostname}/exec).
func (c *Client) ExecList(ctx context.Context, hostname string) ([]api.ExecBackgroundInfo, error) {
	var list []api.ExecBackgroundInfo
	if err := c.call(ctx, http.MethodGet, nil, nil, &list, "vm", hostname, "exec"); err != nil {
		return nil, err
	}
	return list, nil
}

// ExecInfo describes one background exec (GET /vm/{hostname}/exec/{id}).
func (c *Client) ExecInfo(ctx context.Context, hostname, execID string) (*api.ExecBackgroundInfo, error) {
	var info api.ExecBackgroundInfo
	if err := c.call(ctx, http.MethodGet, nil, nil, &info, "vm", hostname, "exec", execID); err != nil {
		return nil, err
	}
	return &info, nil
}

// ExecLogsOptions selects what ExecLogs streams.
type ExecLogsOptions struct {
	// Follow keeps the stream open until the command exits.
	Follow bool
	// FromID starts at the frame with this id (0: the oldest kept).
	FromID uint64
}

// Query encodes o as the logs query string.
func (o ExecLogsOptions) Query() url.Values {
	q := url.Values{}
	if o.Follow {
		q.Set("follow", "true")
	}
	if o.FromID > 0 {
		q.Set("from_id", strconv.FormatUint(o.FromID, 10))
	}
	return q
}

// ExecLogs streams the output frames of a background exec (GET
// /vm/{hostname}/exec/{id}/logs). Each frame carries its id; a gap frame
// says how much output the ring buffer dropped. Without Follow the stream
// ends at EOF after the frames kept so far. The caller must Close it.
func (c *Client) ExecLogs(ctx context.Context, hostname, execID string, opts ExecLogsOptions) (*ExecStream, error) {
	path, err := escapePath("vm", hostname, "exec", execID, "logs")
	if err != nil {
		return nil, err
	}
	resp, err := c.do(ctx, http.MethodGet, path, opts.Query(), nil, "")
	if err != nil {
		return nil, err
	}
	return &ExecStream{body: resp.Body, r: bufio.NewReader(resp.Body), eofEnd: true}, nil
}

// ExecKill signals a background exec (POST /vm/{hostname}/exec/{id}/kill).
// A zero opts sends no body: TERM, escalating to KILL after the daemon's
// default grace.
func (c *Client) ExecKill(ctx context.Context, hostname, execID string, opts api.ExecKillRequest) (*api.ExecKillResponse, error) {
	var in any
	if opts != (api.ExecKillRequest{}) {
		in = opts
	}
	var res api.ExecKillResponse
	if err := c.call(ctx, http.MethodPost, nil, in, &res, "vm", hostname, "exec", execID, "kill"); err != nil {
		return nil, err
	}
	return &res, nil
}

// ExecWaitExit waits up to timeout for a background exec to exit (GET
// /vm/{hostname}/exec/{id}/wait-exit). The timeout travels in whole
// seconds; zero or less leaves the daemon's default (30s). Running out of
// time is not an error: the response says TimedOut.
func (c *Client) ExecWaitExit(ctx context.Context, hostname, execID string, timeout time.Duration) (*api.ExecWaitExitResponse, error) {
	q := url.Values{}
	if secs := int64(timeout / time.Second); secs > 0 {
		q.Set("timeout", strconv.FormatInt(secs, 10))
	}
	var res api.ExecWaitExitResponse
	if err := c.call(ctx, http.MethodGet, q, nil, &res, "vm", hostname, "exec", execID, "wait-exit"); err != nil {
		return nil, err
	}
	return &res, nil
}

// ExecDelete removes an exited background exec and its logs (DELETE
// /vm/{hostname}/exec/{id}). A running one is an error matching
// api.ErrConflict.
func (c *Client) ExecDelete(ctx context.Context, hostname, execID string) (*api.ExecDeleteResponse, error) {
	var res api.ExecDeleteResponse
	if err := c.call(ctx, http.MethodDelete, nil, nil, &res, "vm", hostname, "exec", execID); err != nil {
		return nil, err
	}
	return &res, nil
}
