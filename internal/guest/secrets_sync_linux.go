package guest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/agent"
)

// hostTimeout bounds a request the guest sends the host.
const hostTimeout = time.Minute

// hostLink is the yamux session of the host connected now, if any, so that
// a handler can open a stream to the host (the host answers those with the
// handler of Client.ServeGuest).
type hostLink struct {
	mu   sync.Mutex
	sess *yamux.Session
}

// set records sess as the current session.
func (l *hostLink) set(sess *yamux.Session) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sess = sess
}

// clear forgets sess, unless another session has replaced it already.
func (l *hostLink) clear(sess *yamux.Session) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.sess == sess {
		l.sess = nil
	}
}

// current returns the live session; with none it is an error that wraps
// api.ErrUnavailable.
func (l *hostLink) current() (*yamux.Session, error) {
	l.mu.Lock()
	sess := l.sess
	l.mu.Unlock()
	if sess == nil || sess.IsClosed() {
		return nil, fmt.Errorf("no session with the host: the agent channel is not connected: %w", api.ErrUnavailable)
	}
	return sess, nil
}

// open opens a stream to the host on the current session.
func (l *hostLink) open() (net.Conn, error) {
	sess, err := l.current()
	if err != nil {
		return nil, err
	}
	st, err := sess.OpenStream()
	if err != nil {
		return nil, fmt.Errorf("open a stream to the host: %v: %w", err, api.ErrUnavailable)
	}
	return st, nil
}

// syncFromHost pulls the VM's secrets from the host and applies them as a
// push does. It returns the names the guest holds now.
func (s *Server) syncFromHost(ctx context.Context) ([]string, error) {
	// Checked first for a plain message; a session that ends from here
	// on fails the request instead.
	if _, err := s.host.current(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, hostTimeout)
	defer cancel()
	hc := &http.Client{Transport: &http.Transport{
		DialContext:        func(context.Context, string, string) (net.Conn, error) { return s.host.open() },
		DisableKeepAlives:  true,
		DisableCompression: true,
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://host"+agent.PathHostSecrets, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("ask the host for secrets: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("ask the host for secrets: %w", agent.ResponseError(req, resp))
	}
	files, err := decodeSecretFiles(resp.Body)
	if err != nil {
		// The host sent something this agent will not write: not the
		// caller's fault.
		return nil, fmt.Errorf("secrets from the host: %v", err)
	}
	if err := s.applySecrets(files); err != nil {
		return nil, err
	}
	return secretNames(files), nil
}

// syncSecrets is POST /v1/secrets/sync on the control socket: it pulls the
// VM's secrets from the host and answers a syncResult, or 503 when no host
// is connected.
func (s *Server) syncSecrets(w http.ResponseWriter, r *http.Request) {
	names, err := s.syncFromHost(r.Context())
	if err != nil {
		s.log.Warn("secrets sync", "err", err)
		agent.WriteError(w, err)
		return
	}
	s.log.Info("secrets synced from the host", "count", len(names))
	agent.WriteJSON(w, http.StatusOK, syncResult{Synced: names})
}
