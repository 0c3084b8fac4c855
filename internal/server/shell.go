package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"

	"github.com/coder/websocket"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/api/shellframe"
)

// maxMessage bounds one WebSocket message read from a client, as the
// client bounds what it reads.
const maxMessage = 16 << 20

// shell bridges a WebSocket to a shell on a PTY in the guest (spec §3.11):
// GET /vm/{hostname}/shell?uid=&gid=&shell=&cwd=. The guest session is
// opened first, so that its errors (404, 409, 503, 400) are plain JSON
// answers; then the WebSocket is accepted and each binary message carries
// one shell frame, both ways.
func (s *Server) shell(w http.ResponseWriter, r *http.Request) {
	q := url.Values{}
	for _, k := range []string{"uid", "gid", "shell", "cwd"} {
		if v := r.URL.Query().Get(k); v != "" {
			q.Set(k, v)
		}
	}
	hostname := r.PathValue("hostname")
	ws, guest, ok := s.acceptGuest(w, r, func() (net.Conn, error) { return s.vms.Shell(r.Context(), hostname, q) })
	if !ok {
		return
	}
	defer guest.Close()
	if code, reason := bridgeShell(r.Context(), ws, guest); code != websocket.StatusNormalClosure {
		s.log.Info("shell session ended", "vm", hostname, "status", code, "reason", reason)
	}
}

// bridgeShell carries shell frames between a WebSocket and the guest until
// the session ends, then closes both and returns the status the WebSocket
// was closed with: normal when the guest closed the session (its
// session-close frame is passed on, or made up when the guest just went
// away), when the client asked for a shutdown (passed on) or went away;
// an error status for a malformed frame or a broken guest stream.
func bridgeShell(ctx context.Context, ws *websocket.Conn, guest net.Conn) (websocket.StatusCode, string) {
	type end struct {
		code   websocket.StatusCode
		reason string
	}
	ends := make(chan end, 2)
	go func() {
		code, reason := shellToGuest(ctx, ws, guest)
		ends <- end{code, reason}
	}()
	go func() {
		code, reason := shellToClient(ctx, guest, ws)
		ends <- end{code, reason}
	}()
	first := <-ends
	guest.Close()                          // ends shellToClient, and hangs the shell up
	_ = ws.Close(first.code, first.reason) // ends shellToGuest's read
	<-ends
	return first.code, first.reason
}

// shellToGuest passes the client's binary messages to the guest, each
// checked to be one frame, until the client sends a shutdown (passed on)
// or its WebSocket ends. Text messages are ignored.
func shellToGuest(ctx context.Context, ws *websocket.Conn, guest net.Conn) (websocket.StatusCode, string) {
	for {
		typ, msg, err := ws.Read(ctx)
		if err != nil {
			return websocket.StatusNormalClosure, ""
		}
		if typ != websocket.MessageBinary {
			continue
		}
		f, err := shellframe.Parse(msg)
		if err != nil {
			return websocket.StatusUnsupportedData, err.Error()
		}
		if _, err := guest.Write(f); err != nil {
			return websocket.StatusInternalError, "guest shell stream failed"
		}
		if f.Type() == api.ShellShutdown {
			return websocket.StatusNormalClosure, ""
		}
	}
}

// shellToClient sends the guest's frames to the client, one message each,
// until the guest closes the session. A guest stream that ends without a
// session-close frame gets one made up.
func shellToClient(ctx context.Context, guest net.Conn, ws *websocket.Conn) (websocket.StatusCode, string) {
	for {
		f, err := shellframe.Read(guest)
		if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
			f = shellframe.New(api.ShellSessionClose, nil)
		} else if err != nil {
			return websocket.StatusInternalError, "guest shell stream failed"
		}
		if err := ws.Write(ctx, websocket.MessageBinary, f); err != nil {
			return websocket.StatusNormalClosure, "" // the client is gone
		}
		if f.Type() == api.ShellSessionClose {
			return websocket.StatusNormalClosure, ""
		}
	}
}

// forward bridges a WebSocket to a connection the guest makes (spec §3.12):
// GET /vm/{hostname}/forward, the upstream (host:port or
// unix:/path) in X-Inlets-Upstream. The guest dials first, so that its
// errors (404, 409, 503, 400) are plain JSON answers; then the WebSocket
// is accepted and raw bytes travel as binary messages until either side
// ends, and the WebSocket is closed normally.
func (s *Server) forward(w http.ResponseWriter, r *http.Request) {
	upstream := r.Header.Get(api.HeaderInletsUpstream)
	if upstream == "" {
		s.writeError(w, r, fmt.Errorf("%w: the %s header is required (host:port or unix:/path)", api.ErrInvalid, api.HeaderInletsUpstream))
		return
	}
	hostname := r.PathValue("hostname")
	ws, guest, ok := s.acceptGuest(w, r, func() (net.Conn, error) { return s.vms.Forward(r.Context(), hostname, upstream) })
	if !ok {
		return
	}
	defer guest.Close()
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	client := websocket.NetConn(ctx, ws, websocket.MessageBinary)
	ws.SetReadLimit(maxMessage) // NetConn lifts the limit
	spliceConns(client, guest)
}

// acceptGuest opens the guest end with open first, so that its errors
// (404, 409, 503, 400) are plain JSON answers, then accepts the WebSocket
// with the read limit set. ok is false once the request is answered; the
// caller closes guest otherwise.
func (s *Server) acceptGuest(w http.ResponseWriter, r *http.Request, open func() (net.Conn, error)) (ws *websocket.Conn, guest net.Conn, ok bool) {
	guest, err := open()
	if err != nil {
		s.writeError(w, r, err)
		return nil, nil, false
	}
	ws, err = websocket.Accept(w, r, nil)
	if err != nil {
		guest.Close()
		s.log.Info("accept websocket", "path", r.URL.Path, "err", err) // Accept has answered
		return nil, nil, false
	}
	ws.SetReadLimit(maxMessage)
	return ws, guest, true
}

// spliceConns copies both ways until either direction ends, then closes
// both connections (a WebSocket from NetConn with a normal close) and
// waits for the other copy to stop.
func spliceConns(a, b net.Conn) {
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src) // either direction ending ends the tunnel
		done <- struct{}{}
	}
	go pipe(a, b)
	go pipe(b, a)
	<-done
	a.Close()
	b.Close()
	<-done
}
