package guest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/agent"
)

// ServeControl serves the guest-local control socket at path (normally
// ControlSocket) until ctx ends:
//
//	POST /v1/secrets/sync   pull the VM's secrets from the host and apply
//	                        them; answers {"synced":[names]}, or 503 when
//	                        no host is connected.
//
// The socket is mode 0600, and requests from any user other than the
// agent's own (root, for PID 1) are answered 403, which also covers the
// moment between creating the socket and setting its mode. A socket a
// previous agent left at path is replaced.
func (s *Server) ServeControl(ctx context.Context, path string) error {
	l, err := listenControl(path)
	if err != nil {
		return err
	}
	return s.serveControl(ctx, l, os.Geteuid())
}

// listenControl listens on the control socket at path, mode 0600.
func listenControl(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	return l, nil
}

// serveControl answers the requests of user uid on l until ctx ends.
func (s *Server) serveControl(ctx context.Context, l net.Listener, uid int) error {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+pathSecretsSync, s.syncSecrets)
	hs := &http.Server{
		Handler:           onlyUser(uid, mux),
		ReadHeaderTimeout: time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			uid, err := peerUID(c)
			if err != nil {
				s.log.Warn("control socket: cannot tell the caller's user", "err", err)
				return ctx
			}
			return context.WithValue(ctx, peerUIDKey{}, uid)
		},
	}
	stop := context.AfterFunc(ctx, func() { hs.Close() })
	defer stop()
	err := hs.Serve(l)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("control socket: %w", err)
}

// peerUIDKey holds, in a control request's context, the user of the
// process that connected.
type peerUIDKey struct{}

// onlyUser passes on the requests of user uid and answers the others 403.
func onlyUser(uid int, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		peer, ok := r.Context().Value(peerUIDKey{}).(int)
		if !ok || peer != uid {
			agent.WriteError(w, fmt.Errorf("the agent's control socket answers only uid %d: %w", uid, api.ErrForbidden))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// peerUID returns the user of the process at the other end of the unix
// connection c.
func peerUID(c net.Conn) (int, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return 0, errors.New("not a unix socket")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := rc.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, err
	}
	if cerr != nil {
		return 0, cerr
	}
	return int(cred.Uid), nil
}

// SyncSecrets asks the agent on the control socket at path to pull the
// VM's secrets from the host, and returns the names of the secrets the
// guest holds now. Its errors are meant for a person: a caller that is not
// root is told so.
func SyncSecrets(ctx context.Context, path string) ([]string, error) {
	hc := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
		DisableKeepAlives: true,
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://agent"+pathSecretsSync, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	switch {
	case errors.Is(err, unix.EACCES):
		return nil, fmt.Errorf("permission denied on %s: syncing secrets needs root (sudo slicer-agent secrets sync)", path)
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ECONNREFUSED):
		return nil, fmt.Errorf("no agent listens on %s: is this an OpenSlicer VM, with slicer-agent as its init?", path)
	case err != nil:
		return nil, fmt.Errorf("ask the agent on %s: %w", path, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusForbidden:
		return nil, fmt.Errorf("permission denied by the agent on %s: %w; syncing secrets needs root (sudo slicer-agent secrets sync)", path, agent.ResponseError(req, resp))
	case resp.StatusCode != http.StatusOK:
		return nil, agent.ResponseError(req, resp)
	}
	var res syncResult
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		return nil, fmt.Errorf("decode the agent's answer: %w", err)
	}
	return res.Synced, nil
}
