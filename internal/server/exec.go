package server

import (
	"bufio"
	"errors"
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

	var stdin io.Reader
	if req.Stdin {
		if err := http.NewResponseController(w).EnableFullDuplex(); err != nil {
			s.writeError(w, r, err)
			return
		}
		stdin = r.Body
	}
	frames, err := s.vms.Exec(r.Context(), host, req, stdin)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer frames.Close()
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	if err := copyFrames(w, frames); err != nil {
		s.log.Debug("exec stream ended early", "vm", host, "err", err)
	}
	if stdin != nil {
		// The agent client may still be blocked reading stdin from a caller
		// that keeps it open: the command is over, so unblock it.
		http.NewResponseController(w).SetReadDeadline(time.Now())
	}
}

// copyFrames copies newline-terminated frames from src to w, flushing after
// each. It stops at the first write error (the caller hung up), which
// closes src and so ends the process in the guest.
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
			return err
		}
	}
}
