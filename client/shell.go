package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/coder/websocket"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/api/shellframe"
)

// maxMessage bounds one WebSocket message read by the shell and forward
// clients.
const maxMessage = 16 << 20

// EncodeShellFrame returns one shell frame: the type byte, the payload
// length as 4 big-endian bytes, then the payload (api/shellframe).
func EncodeShellFrame(typ byte, payload []byte) []byte {
	return shellframe.New(typ, payload)
}

// DecodeShellFrame splits one shell message into its type and payload. A
// message shorter than its header or its declared length, or declaring
// more than shellframe.MaxPayload, is an error; bytes after the declared
// payload are dropped.
func DecodeShellFrame(b []byte) (typ byte, payload []byte, err error) {
	f, err := shellframe.Parse(b)
	if err != nil {
		return 0, nil, err
	}
	return f.Type(), f.Payload(), nil
}

// WindowSizePayload encodes a terminal size for an api.ShellWindowSize
// frame: columns then rows, each a big-endian uint32.
func WindowSizePayload(cols, rows uint32) []byte {
	return shellframe.WindowSizePayload(cols, rows)
}

// ShellOptions choose the user, shell and directory of a shell session.
type ShellOptions struct {
	UID, GID *uint32 // nil: the guest's default user
	Shell    string
	Cwd      string
}

func (o ShellOptions) query() url.Values {
	q := url.Values{}
	if o.UID != nil {
		q.Set("uid", strconv.FormatUint(uint64(*o.UID), 10))
	}
	if o.GID != nil {
		q.Set("gid", strconv.FormatUint(uint64(*o.GID), 10))
	}
	setIf(q, "shell", o.Shell)
	setIf(q, "cwd", o.Cwd)
	return q
}

// dialWS opens a WebSocket to an escaped path under the base URL, with
// the client's auth headers plus hdr.
func (c *Client) dialWS(ctx context.Context, path string, q url.Values, hdr http.Header) (*websocket.Conn, error) {
	u, hc, err := c.endpoint(path, q)
	if err != nil {
		return nil, err
	}
	h := c.authHeader()
	for k, v := range hdr {
		h[http.CanonicalHeaderKey(k)] = v
	}
	ws, resp, err := websocket.Dial(ctx, u.String(), &websocket.DialOptions{HTTPClient: hc, HTTPHeader: h})
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			return nil, &api.Error{Method: http.MethodGet, Path: u.RawPath, StatusCode: resp.StatusCode, Message: err.Error()}
		}
		return nil, fmt.Errorf("open websocket %s: %w", u.RawPath, err)
	}
	ws.SetReadLimit(maxMessage)
	return ws, nil
}

// Shell opens an interactive PTY session in a VM (GET /vm/{hostname}/shell,
// WebSocket). Send the terminal size first with Resize. The caller must
// Close the session.
func (c *Client) Shell(ctx context.Context, hostname string, opts ShellOptions) (*ShellConn, error) {
	path, err := escapePath("vm", hostname, "shell")
	if err != nil {
		return nil, err
	}
	ws, err := c.dialWS(ctx, path, opts.query(), nil)
	if err != nil {
		return nil, err
	}
	return &ShellConn{ws: ws}, nil
}

// ShellConn is an open shell session. Its send methods may be called from
// one goroutine while another calls Read.
type ShellConn struct {
	ws *websocket.Conn
}

func (s *ShellConn) send(ctx context.Context, typ byte, payload []byte) error {
	return s.ws.Write(ctx, websocket.MessageBinary, EncodeShellFrame(typ, payload))
}

// SendData sends keystrokes.
func (s *ShellConn) SendData(ctx context.Context, p []byte) error {
	return s.send(ctx, api.ShellData, p)
}

// Resize tells the PTY the terminal's size.
func (s *ShellConn) Resize(ctx context.Context, cols, rows uint32) error {
	return s.send(ctx, api.ShellWindowSize, WindowSizePayload(cols, rows))
}

// Heartbeat keeps an idle session alive.
func (s *ShellConn) Heartbeat(ctx context.Context) error {
	return s.send(ctx, api.ShellHeartbeat, nil)
}

// Shutdown asks for a graceful end of the session.
func (s *ShellConn) Shutdown(ctx context.Context) error {
	return s.send(ctx, api.ShellShutdown, nil)
}

// ErrSessionClosed is what Read returns once the server ends the session
// (a shutdown or session-close frame, or a normal WebSocket close).
var ErrSessionClosed = errors.New("shell session closed")

// Read returns the next chunk of PTY output. Text messages, heartbeats and
// frames of unknown types are skipped.
func (s *ShellConn) Read(ctx context.Context) ([]byte, error) {
	for {
		typ, msg, err := s.ws.Read(ctx)
		if err != nil {
			if websocket.CloseStatus(err) == websocket.StatusNormalClosure {
				return nil, ErrSessionClosed
			}
			return nil, fmt.Errorf("read shell: %w", err)
		}
		if typ != websocket.MessageBinary {
			continue
		}
		ft, payload, err := DecodeShellFrame(msg)
		if err != nil {
			return nil, err
		}
		switch ft {
		case api.ShellData:
			return payload, nil
		case api.ShellShutdown, api.ShellSessionClose:
			return nil, ErrSessionClosed
		}
	}
}

// Close ends the session with a normal WebSocket close.
func (s *ShellConn) Close() error {
	return s.ws.Close(websocket.StatusNormalClosure, "")
}
