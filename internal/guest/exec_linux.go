package guest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/agent"
)

// exec runs a command: POST /v1/exec with the public exec query. Everything
// that can be decided before the process starts is answered with a status;
// after that the answer is frames (or one ExecResult when buffered).
func (s *Server) exec(w http.ResponseWriter, r *http.Request) {
	req, err := api.ParseExecQuery(r.URL.Query())
	if err != nil {
		agent.WriteError(w, err)
		return
	}
	if req.Background {
		s.execBackground(w, req)
		return
	}
	sp, err := s.plan(req)
	if err != nil {
		agent.WriteError(w, err)
		return
	}
	if req.Buffered {
		s.execBuffered(w, r, req, sp)
		return
	}
	s.execStream(w, r, req, sp)
}

// plan works out how to run req from the image's accounts and defaults.
func (s *Server) plan(req *api.ExecRequest) (procSpec, error) {
	accounts, groups := s.readAccounts()
	return planExec(req, accounts, groups, s.imageConfig(), isDir)
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// execStream answers with NDJSON frames: started, output as it comes, and
// exit once the process has exited and its output is drained; or a single
// error frame when the command cannot start. With stdin the request body is
// copied into the process while the frames stream (full duplex).
func (s *Server) execStream(w http.ResponseWriter, r *http.Request, req *api.ExecRequest, sp procSpec) {
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	rc := http.NewResponseController(w)
	if req.Stdin {
		if err := rc.EnableFullDuplex(); err != nil {
			agent.WriteError(w, fmt.Errorf("stdin needs a full-duplex connection: %w", err))
			return
		}
	}
	w.Header().Set("Content-Type", agent.ContentTypeNDJSON)
	fw := &frameWriter{enc: json.NewEncoder(w), rc: rc}
	fw.enc.SetEscapeHTML(false)

	p, err := s.startProcess(sp, startOptions{stdin: req.Stdin})
	if err != nil {
		_ = fw.write(errorFrame(err))
		return
	}
	disarm := p.killOnCancel(ctx)
	defer disarm()
	var stdinDone chan struct{}
	if req.Stdin {
		stdinDone = make(chan struct{})
		go func() {
			defer close(stdinDone)
			if err := copyStdin(p.stdin, r.Body); err != nil {
				s.log.Debug("exec stdin ended", "pid", p.pid, "err", err)
			}
		}()
	}

	if err := fw.write(startedFrame(p.pid, p.started)); err != nil {
		cancel()
	}
	out := make(chan chunk, 16)
	go p.pump(req.Stdio == api.StdioText, out)
	for c := range out {
		if err := fw.write(outputFrame(c.stream, req.Stdio, c.data, time.Now().UTC())); err != nil {
			cancel() // the caller is gone: kill the process, keep draining
		}
	}
	<-p.exited
	// The command is over: a caller hanging up after the exit frame must not
	// kill what it left running in the background.
	disarm()
	if err := fw.write(exitFrame(p.status, p.ended, time.Now().UTC())); err != nil {
		s.log.Debug("exec caller went away", "pid", p.pid, "err", fw.err)
	}
	if stdinDone != nil {
		// The process is done with stdin; unblock a body read that would
		// otherwise wait for the caller.
		_ = rc.SetReadDeadline(time.Now())
		<-stdinDone
	}
}

// execBuffered runs the command to the end and answers with one ExecResult.
// A command that cannot start is still a 200, with error and exit code set.
func (s *Server) execBuffered(w http.ResponseWriter, r *http.Request, req *api.ExecRequest, sp procSpec) {
	p, err := s.startProcess(sp, startOptions{})
	if err != nil {
		agent.WriteJSON(w, http.StatusOK, api.ExecResult{Error: err.Error(), ExitCode: startErrorCode(err)})
		return
	}
	disarm := p.killOnCancel(r.Context())
	defer disarm()
	out := make(chan chunk, 16)
	go p.pump(false, out)
	var stdout, stderr capped
	for c := range out {
		if c.stream == api.FrameStderr {
			stderr.add(c.data)
		} else {
			stdout.add(c.data)
		}
	}
	<-p.exited
	disarm()
	agent.WriteJSON(w, http.StatusOK, bufferedResult(req.Stdio, p.pid, p.started, p.ended, p.status, stdout, stderr))
}

// frameWriter writes frames, one line and one flush each, and remembers the
// first error (the caller went away), after which it writes nothing.
type frameWriter struct {
	enc *json.Encoder
	rc  *http.ResponseController
	err error
}

func (fw *frameWriter) write(f api.ExecFrame) error {
	if fw.err != nil {
		return fw.err
	}
	if err := fw.enc.Encode(f); err != nil { // Encode ends the line with \n
		fw.err = err
		return err
	}
	if err := fw.rc.Flush(); err != nil {
		fw.err = err
	}
	return fw.err
}
