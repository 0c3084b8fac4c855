package guest

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/agent"
)

// forwardDialTimeout bounds dialling a forward's upstream.
const forwardDialTimeout = 10 * time.Second

// forward tunnels to a service in the guest: GET /v1/forward?upstream=
// (host:port or unix:/path) asking to upgrade to agent.ForwardProtocol. The
// agent dials the upstream first: a bad upstream is a 400, one that cannot
// be reached a 503 (api.ErrUnavailable). Then the answer is 101 and the
// stream carries the upstream's bytes both ways until both directions
// have ended.
func (s *Server) forward(w http.ResponseWriter, r *http.Request) {
	if !wantsUpgrade(r, agent.ForwardProtocol) {
		agent.WriteError(w, upgradeError(agent.PathForward, agent.ForwardProtocol))
		return
	}
	upstream := r.URL.Query().Get("upstream")
	network, address, err := parseUpstream(upstream)
	if err != nil {
		agent.WriteError(w, err)
		return
	}
	dctx, cancel := context.WithTimeout(r.Context(), forwardDialTimeout)
	var d net.Dialer
	up, err := d.DialContext(dctx, network, address)
	cancel()
	if err != nil {
		agent.WriteError(w, fmt.Errorf("dial upstream %s: %v: %w", upstream, err, api.ErrUnavailable))
		return
	}
	conn, in, err := upgrade(w, agent.ForwardProtocol)
	if err != nil {
		s.log.Warn("switch to the forward protocol", "err", err)
		up.Close()
		return
	}
	splice(r.Context(), up, conn, in)
}

// closeWriter is a connection whose sending half can be closed alone
// (*net.TCPConn, *net.UnixConn).
type closeWriter interface {
	CloseWrite() error
}

// splice copies host → upstream and upstream → host. A direction that
// reaches EOF closes the sending half of its destination (CloseWrite on
// the upstream; on the host stream, whose Close is a half-close, Close),
// so the other direction can finish. Once both have ended, or either
// fails, or ctx ends, both connections are closed. hostIn reads host.
func splice(ctx context.Context, up net.Conn, host net.Conn, hostIn io.Reader) {
	abort := func() {
		up.Close()
		host.Close()
		_ = host.SetDeadline(time.Now()) // a stream's Close leaves its reads waiting
	}
	stop := context.AfterFunc(ctx, abort)
	defer stop()
	errc := make(chan error, 2)
	go func() {
		_, err := io.Copy(up, hostIn)
		if err == nil {
			if cw, ok := up.(closeWriter); ok {
				err = cw.CloseWrite()
			}
		}
		errc <- err
	}()
	go func() {
		_, err := io.Copy(host, up)
		if err == nil {
			err = host.Close()
		}
		errc <- err
	}()
	for range 2 {
		if err := <-errc; err != nil {
			abort()
		}
	}
	up.Close()
	host.Close()
}
