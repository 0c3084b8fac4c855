package client

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/coder/websocket"

	"github.com/openslicer/openslicer/api"
)

// forwardUserAgent is the User-Agent of forward upgrades, as Slicer's
// client sends it.
const forwardUserAgent = "slicer-forward/1.0"

// ForwardSpec is one parsed -L spec: where to listen locally and what to
// reach in the guest.
type ForwardSpec struct {
	// Network is "tcp" or "unix"; Address is host:port or a socket path.
	Network, Address string
	// Upstream is host:port, or unix:/path, in the guest.
	Upstream string
}

// ParseForwardSpec parses a forward spec (spec §3.12/§5.2):
//
//	127.0.0.1:9000                          listen 127.0.0.1:9000 → 127.0.0.1:9000
//	9001:127.0.0.1:9000                     listen 0.0.0.0:9001   → 127.0.0.1:9000
//	0:127.0.0.1:9000                        a random port         → 127.0.0.1:9000
//	0.0.0.0:9000:127.0.0.1:9000             listen 0.0.0.0:9000   → 127.0.0.1:9000
//	127.0.0.1:9000:/var/run/docker.sock     listen 127.0.0.1:9000 → unix:/var/run/docker.sock
//	9000:/var/run/docker.sock               listen 0.0.0.0:9000   → unix:/var/run/docker.sock
//	/tmp/d.sock:/var/run/docker.sock        unix socket           → unix:/var/run/docker.sock
func ParseForwardSpec(s string) (ForwardSpec, error) {
	bad := func(why string) (ForwardSpec, error) {
		return ForwardSpec{}, fmt.Errorf("%w: forward spec %q: %s", api.ErrInvalid, s, why)
	}
	if strings.HasPrefix(s, "/") { // local unix socket
		local, remote, ok := strings.Cut(s, ":")
		if !ok || !strings.HasPrefix(remote, "/") {
			return bad("a local socket forwards to a socket path in the guest")
		}
		return ForwardSpec{Network: "unix", Address: local, Upstream: "unix:" + remote}, nil
	}
	var upstream string
	head := s
	if i := strings.Index(s, ":/"); i >= 0 { // guest unix socket
		head, upstream = s[:i], "unix:"+s[i+1:]
	}
	parts := strings.Split(head, ":")
	if upstream == "" {
		if len(parts) < 2 {
			return bad("want [[BIND:]PORT:]HOST:PORT")
		}
		host, port := parts[len(parts)-2], parts[len(parts)-1]
		if host == "" || !isPort(port, false) {
			return bad("the guest side must be HOST:PORT")
		}
		upstream = net.JoinHostPort(host, port)
		parts = parts[:len(parts)-2]
		if len(parts) == 0 { // HOST:PORT alone listens on the same address
			return ForwardSpec{Network: "tcp", Address: upstream, Upstream: upstream}, nil
		}
	}
	switch len(parts) {
	case 1:
		if !isPort(parts[0], true) {
			return bad("the local side must be a port")
		}
		return ForwardSpec{Network: "tcp", Address: net.JoinHostPort("0.0.0.0", parts[0]), Upstream: upstream}, nil
	case 2:
		if parts[0] == "" || !isPort(parts[1], true) {
			return bad("the local side must be BIND:PORT")
		}
		return ForwardSpec{Network: "tcp", Address: net.JoinHostPort(parts[0], parts[1]), Upstream: upstream}, nil
	}
	return bad("want [[BIND:]PORT:]HOST:PORT or [[BIND:]PORT:]/guest/socket")
}

// isPort reports whether s is a TCP port, 0 allowed only when zeroOK.
func isPort(s string, zeroOK bool) bool {
	n, err := strconv.ParseUint(s, 10, 16)
	return err == nil && (n > 0 || zeroOK)
}

// ListenForward opens the local listener of a spec. A unix socket is
// made mode 0660; a stale socket file is not removed.
func ListenForward(ctx context.Context, spec ForwardSpec) (net.Listener, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, spec.Network, spec.Address)
	if err != nil {
		return nil, fmt.Errorf("listen on %s %s: %w", spec.Network, spec.Address, err)
	}
	if spec.Network == "unix" {
		if err := os.Chmod(spec.Address, 0o660); err != nil {
			ln.Close()
			return nil, fmt.Errorf("chmod %s: %w", spec.Address, err)
		}
	}
	return ln, nil
}

// DialForward opens one tunnel to upstream (host:port or unix:/path) in a
// VM (GET /vm/{hostname}/forward, WebSocket) and returns it as a
// connection carrying raw bytes. Closing it sends a normal close.
func (c *Client) DialForward(ctx context.Context, hostname, upstream string) (net.Conn, error) {
	path, err := escapePath("vm", hostname, "forward")
	if err != nil {
		return nil, err
	}
	hdr := http.Header{
		api.HeaderInletsClientID: {hostname},
		api.HeaderInletsMode:     {"local"},
		api.HeaderInletsUpstream: {upstream},
		"User-Agent":             {forwardUserAgent},
	}
	ws, err := c.dialWS(ctx, path, nil, hdr)
	if err != nil {
		return nil, err
	}
	return websocket.NetConn(ctx, ws, websocket.MessageBinary), nil
}

// Forward accepts connections on ln until ctx ends or ln fails, and
// tunnels each one to upstream in a VM over its own WebSocket. Either side
// closing ends that tunnel. It closes ln and waits for open tunnels to
// end before returning. A tunnel that cannot be opened is logged and its
// local connection closed.
func (c *Client) Forward(ctx context.Context, log *slog.Logger, hostname string, ln net.Listener, upstream string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	defer ln.Close()
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("accept on %s: %w", ln.Addr(), err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.tunnel(ctx, log, hostname, conn, upstream)
		}()
	}
}

func (c *Client) tunnel(ctx context.Context, log *slog.Logger, hostname string, local net.Conn, upstream string) {
	defer local.Close()
	remote, err := c.DialForward(ctx, hostname, upstream)
	if err != nil {
		log.Warn("open forward tunnel", "vm", hostname, "upstream", upstream, "err", err)
		return
	}
	splice(ctx, local, remote)
}

// splice copies both ways until either side ends or ctx is done, then
// closes both and waits for both copies to stop.
func splice(ctx context.Context, a, b net.Conn) {
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src) // either direction ending ends the tunnel
		done <- struct{}{}
	}
	go pipe(a, b)
	go pipe(b, a)
	ended := 0
	select {
	case <-done:
		ended = 1
	case <-ctx.Done():
	}
	a.Close()
	b.Close()
	for ; ended < 2; ended++ {
		<-done
	}
}
