package agent

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"
)

// OpenShell starts an interactive shell in the guest (query: uid, gid,
// shell, cwd, as the public shell endpoint takes them) and returns the
// stream, which carries shell frames (api/shellframe) both ways: send data, window sizes,
// heartbeats and a shutdown; receive data, then api.ShellSessionClose and
// EOF when the shell has exited. Closing the stream hangs the shell up.
func (c *Client) OpenShell(ctx context.Context, query url.Values) (net.Conn, error) {
	return c.Upgrade(ctx, PathShell, query, ShellProtocol)
}

// DialForward connects to upstream in the guest (host:port, or unix:/path)
// and returns the stream, which carries the upstream's bytes both ways.
// Its CloseWrite half-closes the tunnel; it reads EOF once the upstream
// has closed its side. An upstream that cannot be reached is an error
// that unwraps to api.ErrUnavailable.
func (c *Client) DialForward(ctx context.Context, upstream string) (net.Conn, error) {
	return c.Upgrade(ctx, PathForward, url.Values{"upstream": {upstream}}, ForwardProtocol)
}

// Upgrade asks the agent route path to switch the stream to protocol
// (GET with Connection: Upgrade) and returns the stream once it has
// answered 101. Any other answer is an *api.Error that unwraps to the api
// error class of its status. ctx bounds the handshake only; the stream
// lives until it is closed.
func (c *Client) Upgrade(ctx context.Context, path string, query url.Values, protocol string) (net.Conn, error) {
	target := "http://agent" + path
	if len(query) > 0 {
		target += "?" + query.Encode()
	}
	req, err := http.NewRequest(http.MethodGet, target, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", protocol)
	nc, err := c.openStream(ctx, "", "")
	if err != nil {
		return nil, fmt.Errorf("agent %s: %w", path, err)
	}
	st := nc.(*stream)
	stop := context.AfterFunc(ctx, func() { _ = st.SetDeadline(time.Now()) })
	br, err := handshake(st, req, protocol)
	if !stop() {
		err = fmt.Errorf("agent %s: %w", path, ctx.Err())
	}
	if err != nil {
		st.Close()
		return nil, err
	}
	return &upgradedConn{stream: st, r: br}, nil
}

// handshake sends req on st and reads the answer: on 101 it returns the
// reader that holds what followed the answer; otherwise an error.
func handshake(st *stream, req *http.Request, protocol string) (*bufio.Reader, error) {
	if err := req.Write(st); err != nil {
		return nil, fmt.Errorf("agent %s: send upgrade: %w", req.URL.Path, err)
	}
	br := bufio.NewReader(st)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		return nil, fmt.Errorf("agent %s: read upgrade answer: %w", req.URL.Path, err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		defer resp.Body.Close()
		return nil, ResponseError(req, resp)
	}
	if got := resp.Header.Get("Upgrade"); !strings.EqualFold(got, protocol) {
		return nil, fmt.Errorf("agent %s: switched to %q, want %q", req.URL.Path, got, protocol)
	}
	return br, nil
}

// upgradedConn is an upgraded agent stream. Reads go through the reader
// of the handshake first. A yamux stream's Close only ends its sending
// half; here that is CloseWrite, and Close also ends pending reads.
type upgradedConn struct {
	*stream
	r      *bufio.Reader
	closed atomic.Bool
}

func (u *upgradedConn) Read(p []byte) (int, error) {
	n, err := u.r.Read(p)
	if err != nil && u.closed.Load() {
		err = net.ErrClosed
	}
	return n, err
}

// CloseWrite tells the agent this side is done sending (EOF there); reads
// go on until the agent closes its side.
func (u *upgradedConn) CloseWrite() error {
	return u.stream.Conn.Close()
}

// Close ends both halves.
func (u *upgradedConn) Close() error {
	u.closed.Store(true)
	err := u.stream.Close()
	_ = u.stream.SetReadDeadline(time.Now())
	return err
}
