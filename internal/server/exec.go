package server

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/openslicer/openslicer/api"
)

// exec runs a command in a guest. The query carries the request; the body,
// when stdin=true, is the process's stdin, read concurrently with the
// streamed response (full duplex). The agent's NDJSON frames are passed
// through unchanged, one flush per frame.
func (s *Server) exec(w http.ResponseWriter, r *http.Request) {
	req, err := api.ParseExecQuery(r.URL.Query())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	host := r.PathValue("hostname")
	if req.Background {
		s.guest("/v1/exec")(w, r) // the agent keeps background execs
		return
	}
	if req.Buffered {
		res, err := s.vms.ExecBuffered(r.Context(), host, req)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, res)
		return
	}

	var stdin *stdinBody
	var body io.Reader
	if req.Stdin {
		if err := http.NewResponseController(w).EnableFullDuplex(); err != nil {
			s.writeError(w, r, err)
			return
		}
		stdin = newStdinBody(r.Body)
		defer stdin.stop(w)
		body = stdin
	}
	frames, err := s.vms.Exec(r.Context(), host, req, body)
	if stdin != nil {
		stdin.answering(w)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer frames.Close()
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	if err := copyFrames(w, frames); err != nil {
		s.log.Debug("exec stream ended early", "vm", host, "err", err)
		if errors.Is(err, errGuestBroke) {
			panic(http.ErrAbortHandler) // a cut stream must not look complete
		}
	}
}

// stdinBody is the request body of an exec with stdin, as the agent client
// reads it. Only its own goroutine reads the request body, so that when
// the command is over the handler can tell whether a read is still
// pending, and end it before it returns (net/http forbids reading a body
// after the handler has returned).
//
// The connection is what is at stake. A read deadline is the only way to
// end a pending read, and it cancels the context of the whole connection
// (net/http treats it as a broken connection), so every later request on
// it would arrive cancelled. Therefore:
//   - a caller whose stdin has ended by the time the answer starts (the
//     usual case: a Go SDK client with a bytes or strings reader) keeps a
//     connection like any other, and no deadline is ever set;
//   - otherwise the answer carries "Connection: close"; when the command
//     ends with stdin still unfinished, the pending read is cut with a
//     deadline and the connection is closed after the answer, never reused.
//     It could not be reused anyway: the rest of its request body is still
//     on the wire.
type stdinBody struct {
	pipe *io.PipeReader
	done chan struct{} // closed when the copy from the request body is over
}

func newStdinBody(src io.Reader) *stdinBody {
	pr, pw := io.Pipe()
	b := &stdinBody{pipe: pr, done: make(chan struct{})}
	go func() {
		_, err := io.Copy(pw, src)
		close(b.done) // before the agent can see the end of stdin
		pw.CloseWithError(err)
	}()
	return b
}

func (b *stdinBody) Read(p []byte) (int, error) { return b.pipe.Read(p) }

// finished reports whether the request body has been read to its end (or
// failed): no read of it is pending or to come.
func (b *stdinBody) finished() bool {
	select {
	case <-b.done:
		return true
	default:
		return false
	}
}

// answering is called before the answer's header is written, whatever the
// answer. When the caller is still sending stdin, the rest may have to be
// cut off when the command ends, so the answer says now that this
// connection will carry no other request.
func (b *stdinBody) answering(w http.ResponseWriter) {
	if !b.finished() {
		w.Header().Set("Connection", "close")
	}
}

// stop ends the copy before the handler returns: the agent side gets no
// more stdin, and a read of the request body still pending is cut with a
// read deadline. That happens only on a connection that closes after this
// answer: one whose body had not ended when the answer started (answering),
// or one the server aborts (a handler that panicked before answering).
func (b *stdinBody) stop(w http.ResponseWriter) {
	b.pipe.CloseWithError(errCommandOver)
	if !b.finished() {
		http.NewResponseController(w).SetReadDeadline(time.Now())
	}
	<-b.done
}

// errCommandOver ends a stdin copy whose command has exited.
var errCommandOver = errors.New("the command is over: stdin is no longer read")

// copyFrames copies newline-terminated frames from src to w, flushing after
// each. It stops at the first write error (the caller hung up), which
// closes src and so ends the process in the guest. A failed read of src
// is wrapped in errGuestBroke.
func copyFrames(w http.ResponseWriter, src io.Reader) error {
	rc := http.NewResponseController(w)
	br := bufio.NewReaderSize(src, 64<<10)
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// A frame longer than the buffer: write what we have, keep reading.
			if _, werr := w.Write(line); werr != nil {
				return werr
			}
			continue
		}
		if len(line) > 0 {
			if _, werr := w.Write(line); werr != nil {
				return werr
			}
			if ferr := rc.Flush(); ferr != nil {
				return ferr
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("%w: %w", errGuestBroke, err)
		}
	}
}
