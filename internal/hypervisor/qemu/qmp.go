package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"time"
)

// QMP is a session with a QEMU Machine Protocol socket: JSON objects, one
// per line in practice, in both directions. After the greeting and
// qmp_capabilities, each command gets exactly one reply carrying the
// command's id ("return" or "error"); asynchronous events ("event") may
// arrive at any time and are skipped.
//
// A QMP is safe for concurrent use; commands run one at a time. After an
// I/O error (including a cancelled context) the session is broken and
// every later command fails: dial a new one.
type QMP struct {
	conn net.Conn

	mu     sync.Mutex
	dec    *json.Decoder
	lastID uint64
	broken error
	// events holds the events read while waiting for replies, oldest
	// first, for TakeEvent (at most maxQueuedEvents).
	events []message
}

// maxQueuedEvents bounds QMP.events; older events are dropped first.
const maxQueuedEvents = 64

// QMPError is a command's "error" reply.
type QMPError struct {
	Class string `json:"class"`
	Desc  string `json:"desc"`
}

func (e *QMPError) Error() string { return "qmp: " + e.Class + ": " + e.Desc }

// DialQMP connects to the QMP socket at path and negotiates capabilities.
func DialQMP(ctx context.Context, path string) (*QMP, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("dial qmp: %w", err)
	}
	q := &QMP{conn: conn, dec: json.NewDecoder(conn)}
	if err := q.handshake(ctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("qmp handshake on %s: %w", path, err)
	}
	return q, nil
}

// Close ends the session.
func (q *QMP) Close() error { return q.conn.Close() }

// Execute runs cmd with args (nil for none; otherwise anything that
// encodes as a JSON object) and returns the "return" value. A command QEMU
// refuses returns a *QMPError.
func (q *QMP) Execute(ctx context.Context, cmd string, args any) (json.RawMessage, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	ret, err := q.execute(ctx, cmd, args, nil)
	if err != nil {
		return nil, fmt.Errorf("qmp %s: %w", cmd, err)
	}
	return ret, nil
}

func (q *QMP) handshake(ctx context.Context) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	release := q.bound(ctx)
	var greeting struct {
		QMP json.RawMessage `json:"QMP"`
	}
	err := q.dec.Decode(&greeting)
	release()
	if err != nil {
		return fmt.Errorf("read greeting: %w", q.ioError(ctx, err))
	}
	if greeting.QMP == nil {
		return errors.New("peer sent no QMP greeting")
	}
	_, err = q.execute(ctx, "qmp_capabilities", nil, nil)
	return err
}

// message is any object QEMU sends after the greeting.
type message struct {
	Return json.RawMessage `json:"return"`
	Error  *QMPError       `json:"error"`
	Event  string          `json:"event"`
	Data   json.RawMessage `json:"data"`
	ID     json.RawMessage `json:"id"`
}

// TakeEvent returns the data of the oldest event called name (and
// matching match, when not nil) that QEMU sent while this session waited
// for a command's reply, and forgets it; false when there is none. It
// does not read from QEMU.
func (q *QMP) TakeEvent(name string, match func(data json.RawMessage) bool) (json.RawMessage, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.takeEvent(name, match)
}

func (q *QMP) takeEvent(name string, match func(data json.RawMessage) bool) (json.RawMessage, bool) {
	for i, msg := range q.events {
		if msg.Event == name && (match == nil || match(msg.Data)) {
			q.events = append(q.events[:i], q.events[i+1:]...)
			return msg.Data, true
		}
	}
	return nil, false
}

// execute sends one command, with oob as ancillary data when not nil, and
// reads until its reply.
func (q *QMP) execute(ctx context.Context, cmd string, args any, oob []byte) (json.RawMessage, error) {
	if q.broken != nil {
		return nil, fmt.Errorf("session broken by an earlier error: %w", q.broken)
	}
	q.lastID++
	id := strconv.FormatUint(q.lastID, 10)
	req, err := json.Marshal(struct {
		Execute   string `json:"execute"`
		Arguments any    `json:"arguments,omitempty"`
		ID        uint64 `json:"id"`
	}{cmd, args, q.lastID})
	if err != nil {
		return nil, fmt.Errorf("encode arguments: %w", err)
	}

	release := q.bound(ctx)
	defer release()
	if err := q.write(append(req, '\n'), oob); err != nil {
		return nil, q.ioError(ctx, err)
	}
	for {
		var msg message
		if err := q.dec.Decode(&msg); err != nil {
			return nil, q.ioError(ctx, err)
		}
		switch {
		case msg.Event != "":
			if len(q.events) == maxQueuedEvents {
				q.events = q.events[1:]
			}
			q.events = append(q.events, msg) // for TakeEvent
			continue
		case msg.ID != nil && string(msg.ID) != id:
			continue // not ours
		case msg.Error != nil:
			return nil, msg.Error
		case msg.Return != nil:
			return msg.Return, nil
		}
		// Neither a reply nor an event: ignore it, as QMP asks clients to
		// ignore what they do not understand.
	}
}

// write sends b, and oob with it when not nil, which needs a unix socket.
func (q *QMP) write(b, oob []byte) error {
	if oob == nil {
		_, err := q.conn.Write(b)
		return err
	}
	uc, ok := q.conn.(*net.UnixConn)
	if !ok {
		return errors.New("passing a file descriptor needs a unix socket")
	}
	n, _, err := uc.WriteMsgUnix(b, oob, nil)
	if err == nil && n < len(b) {
		// The descriptor went with the first bytes; the rest follows.
		_, err = uc.Write(b[n:])
	}
	return err
}

// bound makes I/O on the connection fail when ctx ends, until the
// returned release is called.
func (q *QMP) bound(ctx context.Context) (release func()) {
	deadline, _ := ctx.Deadline() // zero: none
	q.conn.SetDeadline(deadline)
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		q.conn.SetDeadline(time.Unix(1, 0))
		close(fired)
	})
	return func() {
		if !stop() {
			<-fired
		}
	}
}

// ioError marks the session broken and reports ctx's error in place of
// the timeout it caused. The connection's deadline, set from ctx's, can
// fire a moment before ctx itself is marked done.
func (q *QMP) ioError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		err = ctx.Err()
	} else if d, ok := ctx.Deadline(); ok && errors.Is(err, os.ErrDeadlineExceeded) && !time.Now().Before(d) {
		err = context.DeadlineExceeded
	}
	q.broken = err
	return err
}
