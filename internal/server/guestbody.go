package server

import (
	"errors"
	"io"
	"net/http"
	"sync/atomic"
	"time"
)

// guestBody is the body of a request passed through to the agent, as the
// agent client reads it. It counts what has been read, so the handler can
// tell an answer that came before the whole body had gone through (a 507
// from a statfs check, a refusal), which the agent gives without reading
// the rest.
//
// Such an answer must reach the caller while it may still be sending, and
// Go's server would hold it up: the agent client reads the body in a
// goroutine of its own, and a read waiting for the caller's next bytes
// holds the body's lock, which the server takes again to write the
// answer's header unless the answer closes the connection. So an early
// answer closes the connection (Connection: close, which also tells the
// caller its unsent bytes are not wanted), and once it is written an
// expired read deadline ends the read still waiting, so the connection is
// torn down at once rather than left waiting for bytes nobody will read.
// The deadline is only ever set on a connection that is being closed.
type guestBody struct {
	io.ReadCloser
	length int64 // declared, or -1
	read   atomic.Int64
	eof    atomic.Bool
}

// trackGuestBody replaces r's body, when it has one, with a guestBody
// and returns it; nil when r has no body.
func trackGuestBody(r *http.Request) *guestBody {
	if r.ContentLength == 0 || r.Body == nil || r.Body == http.NoBody {
		return nil
	}
	b := &guestBody{ReadCloser: r.Body, length: r.ContentLength}
	r.Body = b
	return b
}

func (b *guestBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.read.Add(int64(n))
	if errors.Is(err, io.EOF) {
		b.eof.Store(true)
	}
	return n, err
}

// unread reports whether part of the body has not been read.
func (b *guestBody) unread() bool {
	if b == nil || b.eof.Load() {
		return false
	}
	return b.length < 0 || b.read.Load() < b.length
}

// answerEarly prepares w for an answer given before b was read to its
// end, and returns what to run once the answer is written (see
// guestBody); nothing when b has been read.
func (b *guestBody) answerEarly(w http.ResponseWriter) (after func()) {
	if !b.unread() {
		return func() {}
	}
	w.Header().Set("Connection", "close")
	return func() { _ = http.NewResponseController(w).SetReadDeadline(time.Now()) }
}
