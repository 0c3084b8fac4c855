package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/openslicer/openslicer/api"
)

const (
	// readyAttempt bounds one health probe of WaitReady. A probe sent
	// before the guest agent is up waits in the channel and is answered
	// as soon as the agent opens its port, so a longer bound costs no
	// latency; it only decides when a silent session is given up.
	readyAttempt = 3 * time.Second
	// pingTimeout bounds the wait for a yamux pong in dropIfSilent: a
	// live guest answers one in milliseconds, even under load.
	pingTimeout = 5 * time.Second
	// retryDelay spaces attempts that fail at once (nothing to dial yet).
	retryDelay = 50 * time.Millisecond
	// maxErrorBody is the most of an error response that is read.
	maxErrorBody = 64 << 10
)

// Client is the host end of the protocol for one VM. It dials the VM's
// agent channel when first needed and keeps one yamux session on it,
// dialling again once that session has ended (the VM restarted, the guest
// reopened its port, the channel broke). Each request runs on its own
// yamux stream. A Client is safe for concurrent use.
type Client struct {
	dial         func(context.Context) (net.Conn, error)
	log          *slog.Logger
	http         *http.Client
	readyAttempt time.Duration
	pingTimeout  time.Duration

	mu     sync.Mutex
	sess   *session
	closed bool
	guest  http.Handler // answers the streams the guest opens (ServeGuest)
}

// session is a yamux client session and the number of streams handed out
// on it that are not closed yet.
type session struct {
	mux    *yamux.Session
	active int // guarded by Client.mu
}

// NewClient returns a client that reaches the agent through dial, which
// opens the VM's agent byte stream (hypervisor.Machine.DialAgent).
func NewClient(dial func(ctx context.Context) (net.Conn, error), log *slog.Logger) *Client {
	c := &Client{dial: dial, log: log, readyAttempt: readyAttempt, pingTimeout: pingTimeout}
	c.http = &http.Client{Transport: &http.Transport{
		DialContext: c.openStream,
		// One request per stream: streams are cheap, and an idle pooled
		// stream would outlive the session it belongs to.
		DisableKeepAlives:  true,
		DisableCompression: true,
	}}
	return c
}

// Close ends the session; later calls fail.
func (c *Client) Close() error {
	c.mu.Lock()
	s := c.sess
	c.sess, c.closed = nil, true
	c.mu.Unlock()
	if s != nil {
		return s.mux.Close()
	}
	return nil
}

// Detach closes the session of a host that leaves its guest running (a
// daemon stopping without stopping the VM): it first asks the agent to
// release its channel (Release, bounded by ctx), so that the agent waits
// for its next host instead of learning of this one's departure only as
// the next one connects, when the two notices can merge into none and the
// agent keeps serving a session that is gone. The release is best effort:
// without a live session none is sent, and the session is closed anyway.
func (c *Client) Detach(ctx context.Context) error {
	c.mu.Lock()
	live := c.sess != nil && !c.sess.mux.IsClosed()
	c.mu.Unlock()
	if live {
		if err := c.Release(ctx); err != nil {
			c.log.Debug("release the agent before leaving it", "err", err)
		}
	}
	return c.Close()
}

// Health asks the agent for its health.
func (c *Client) Health(ctx context.Context) (*api.AgentHealthResponse, error) {
	var h api.AgentHealthResponse
	if err := c.doJSON(ctx, http.MethodGet, PathHealth, nil, &h); err != nil {
		return nil, err
	}
	return &h, nil
}

// FirstBoot hands the agent the VM's first-boot data. Call it once the
// agent is ready (WaitReady), on every boot and re-attach: the agent acts
// on it only while its disk has no userdata marker and no userdata is
// running, so calling it again is harmless. It returns once the SSH keys
// are installed and userdata has started, not when userdata ends: health
// reports userdata_ran once it has (at once when there is no userdata). A
// DefaultUser the image does not have is an error that unwraps to
// api.ErrInvalid.
func (c *Client) FirstBoot(ctx context.Context, fb FirstBoot) error {
	return c.doJSON(ctx, http.MethodPut, PathFirstBoot, fb, nil)
}

// Stats asks the agent for a snapshot of the guest's resource usage.
func (c *Client) Stats(ctx context.Context) (*api.Snapshot, error) {
	var s api.Snapshot
	if err := c.doJSON(ctx, http.MethodGet, PathStats, nil, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// ReadDir lists the guest directory dir as root, sorted by name. A
// directory that is not there is an error that unwraps to
// api.ErrNotFound.
func (c *Client) ReadDir(ctx context.Context, dir string) ([]api.FSInfo, error) {
	var out []api.FSInfo
	q := url.Values{"path": {dir}, "uid": {"0"}, "gid": {"0"}}
	if err := c.doJSON(ctx, http.MethodGet, PathFSReadDir+"?"+q.Encode(), nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// WaitReady returns once the agent answers health, or with an error when
// ctx ends first. Each probe is bounded; a probe that times out gives the
// session up when it is silent (dropIfSilent: nothing else open on it, or
// no answer to a ping), so that a guest which reopened its side, or a
// channel that lost bytes, gets a fresh one.
func (c *Client) WaitReady(ctx context.Context) error {
	// lastErr is the last failure that says something about the agent;
	// the error of an attempt cut short by ctx itself says nothing.
	var lastErr error
	giveUp := func() error {
		return fmt.Errorf("wait for agent: %w (last error: %v)", ctx.Err(), lastErr)
	}
	for {
		actx, cancel := context.WithTimeout(ctx, c.readyAttempt)
		_, err := c.Health(actx)
		timedOut := actx.Err() != nil
		cancel()
		if err != nil && (lastErr == nil || !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled)) {
			lastErr = err
		}
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil:
			return giveUp()
		case timedOut:
			c.log.Debug("agent health probe timed out", "err", err)
			c.dropIfSilent()
			continue
		}
		c.log.Debug("agent not ready", "err", err)
		select {
		case <-ctx.Done():
			return giveUp()
		case <-time.After(retryDelay):
		}
	}
}

// Exec starts a command and returns the agent's NDJSON frame stream as it
// comes, for the caller to pass through or decode; the caller closes it.
// The stream ends with the exit frame, or is a single error frame when the
// command could not start; closing it early, or ctx ending, kills the
// command. stdin, when not nil, is sent as the command's stdin while the
// frames are read, until it returns EOF; note that a Read of stdin still
// pending when the command ends is left to return on its own, so the
// caller should make it return (close it, or set a deadline). Errors
// before the command starts are *api.Error values that unwrap to the api
// error class of the agent's status.
func (c *Client) Exec(ctx context.Context, req *api.ExecRequest, stdin io.Reader) (io.ReadCloser, error) {
	q := req.Query()
	q.Del("buffered")
	q.Del("stdin")
	body := io.Reader(http.NoBody)
	if stdin != nil {
		q.Set("stdin", "true")
		body = struct{ io.Reader }{stdin} // the transport must not close the caller's reader
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://agent"+PathExec+"?"+q.Encode(), body)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(hreq)
	if err != nil {
		return nil, fmt.Errorf("agent exec: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		return nil, ResponseError(hreq, resp)
	}
	return resp.Body, nil
}

// ExecBuffered runs a command to the end and returns its collected output.
// A non-zero exit is a result, not an error.
func (c *Client) ExecBuffered(ctx context.Context, req *api.ExecRequest) (*api.ExecResult, error) {
	q := req.Query()
	q.Del("stdin")
	q.Set("buffered", "true")
	var res api.ExecResult
	if err := c.doJSON(ctx, http.MethodPost, PathExec+"?"+q.Encode(), nil, &res); err != nil {
		return nil, err
	}
	return &res, nil
}

// doJSON makes a request with in, unless nil, as its JSON body, and
// decodes a 2xx JSON answer into out, unless nil.
func (c *Client) doJSON(ctx context.Context, method, target string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("agent %s %s: encode request: %w", method, target, err)
		}
		body = bytes.NewReader(b)
	}
	hreq, err := http.NewRequestWithContext(ctx, method, "http://agent"+target, body)
	if err != nil {
		return err
	}
	if in != nil {
		hreq.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(hreq)
	if err != nil {
		return fmt.Errorf("agent %s %s: %w", method, hreq.URL.Path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return ResponseError(hreq, resp)
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("agent %s %s: decode answer: %w", method, hreq.URL.Path, err)
	}
	return nil
}

// ResponseError turns a non-2xx answer into an *api.Error.
func ResponseError(req *http.Request, resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	msg := strings.TrimSpace(string(b))
	var er api.ErrorResponse
	if json.Unmarshal(b, &er) == nil && er.Error != "" {
		msg = er.Error
	}
	return &api.Error{Method: req.Method, Path: req.URL.Path, StatusCode: resp.StatusCode, Message: msg}
}

// openStream is the transport's dialer: a new stream on the current
// session, which is (re)established first if needed.
func (c *Client) openStream(ctx context.Context, _, _ string) (net.Conn, error) {
	var lastErr error
	for range 2 { // a session found dead is replaced once
		s, err := c.session(ctx)
		if err != nil {
			return nil, err
		}
		st, err := s.mux.OpenStream()
		if err == nil {
			return &stream{Conn: st, done: func() { c.release(s) }}, nil
		}
		lastErr = err
		c.drop(s) // shut down, or the guest said go away
	}
	return nil, fmt.Errorf("open agent stream: %w", lastErr)
}

// session returns the live session, dialling a new one if there is none,
// and counts a stream on it.
func (c *Client) session(ctx context.Context) (*session, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, fmt.Errorf("agent client: %w", net.ErrClosed)
	}
	if c.sess != nil && !c.sess.mux.IsClosed() {
		c.sess.active++
		return c.sess, nil
	}
	conn, err := c.dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("dial agent: %w", err)
	}
	mux, err := yamux.Client(conn, YamuxConfig(c.log, false))
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("start yamux session: %w", err)
	}
	c.log.Debug("agent session started")
	c.sess = &session{mux: mux, active: 1}
	go c.serveGuest(mux, c.guest)
	return c.sess, nil
}

// release uncounts a stream of s.
func (c *Client) release(s *session) {
	c.mu.Lock()
	s.active--
	c.mu.Unlock()
}

// drop uncounts the stream that could not be opened on s, and ends s.
func (c *Client) drop(s *session) {
	c.mu.Lock()
	s.active--
	if c.sess == s {
		c.sess = nil
	}
	c.mu.Unlock()
	s.mux.Close()
}

// dropIfSilent ends the current session, after a health probe on it timed
// out, when no stream is open on it, or when it does not answer a yamux
// ping within pingTimeout either: its guest end is gone (the guest reopened
// its port, or the channel lost bytes), so nothing waiting on it can be
// answered. A session that answers the ping is kept (its agent is busy).
// Without the ping, two callers of WaitReady probing one dead session
// each saw the other's probe open and neither gave the session up.
func (c *Client) dropIfSilent() {
	c.mu.Lock()
	s := c.sess
	idle := s != nil && s.active == 0
	c.mu.Unlock()
	if s == nil {
		return
	}
	if !idle && answersPing(s.mux, c.pingTimeout) {
		return
	}
	c.mu.Lock()
	if c.sess == s {
		c.sess = nil
	}
	c.mu.Unlock()
	c.log.Debug("giving up a silent agent session", "idle", idle)
	s.mux.Close()
}

// answersPing reports whether the peer of mux answers a ping within d. A
// ping left waiting ends when the session is closed.
func answersPing(mux *yamux.Session, d time.Duration) bool {
	pong := make(chan error, 1)
	go func() { _, err := mux.Ping(); pong <- err }()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case err := <-pong:
		return err == nil
	case <-t.C:
		return false
	}
}

// stream is a yamux stream that tells its session when it is closed.
type stream struct {
	net.Conn
	once sync.Once
	done func()
}

func (s *stream) Close() error {
	s.once.Do(s.done)
	return s.Conn.Close()
}
