package guest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os/exec"
	"time"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/agent"
)

// maxKillBody bounds the JSON body of a kill.
const maxKillBody = 64 << 10

// routeBackground registers the background-exec routes (spec §3.7). The
// launch is POST /v1/exec?background=true, answered by execBackground.
func (s *Server) routeBackground(mux *http.ServeMux) {
	mux.HandleFunc("GET "+agent.PathExec, s.bgList)
	mux.HandleFunc("GET "+agent.PathExec+"/{id}", s.bgInfo)
	mux.HandleFunc("DELETE "+agent.PathExec+"/{id}", s.bgDelete)
	mux.HandleFunc("POST "+agent.PathExec+"/{id}/kill", s.bgKill)
	mux.HandleFunc("GET "+agent.PathExec+"/{id}/wait-exit", s.bgWaitExit)
	mux.HandleFunc("GET "+agent.PathExec+"/{id}/logs", s.bgLogs)
}

// execBackground launches req detached from the request: in a session of
// its own, stdin on /dev/null, output into a log ring of ring_bytes read
// through …/logs. It answers 201 with the exec's id once the process runs.
func (s *Server) execBackground(w http.ResponseWriter, req *api.ExecRequest) {
	ringBytes, err := checkBackground(req)
	if err != nil {
		agent.WriteError(w, err)
		return
	}
	req.Stdio = api.StdioBase64 // the log always carries base64
	sp, err := s.plan(req)
	if err != nil {
		agent.WriteError(w, err)
		return
	}
	if err := s.bg.reserve(ringBytes); err != nil {
		agent.WriteError(w, err)
		return
	}
	p, err := s.startProcess(sp, startOptions{detach: true})
	if err != nil {
		s.bg.release(ringBytes)
		agent.WriteError(w, startError(req.Command, err))
		return
	}
	e := newBgExec(newExecID(), req, sp, ringBytes, p)
	s.bg.add(e)
	go e.collect(s.log)
	s.log.Info("background exec started", "exec_id", e.id, "pid", p.pid, "command", req.Command)
	agent.WriteJSON(w, http.StatusCreated, api.ExecBackgroundResponse{
		ExecID: e.id, PID: p.pid, StartedAt: p.started, RingBytes: ringBytes,
	})
}

// startError classes a launch that could not start: a command or working
// directory that is missing or may not be run is the request's fault.
func startError(command string, err error) error {
	if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
		return fmt.Errorf("%w: start %q: %v", api.ErrInvalid, command, err)
	}
	return fmt.Errorf("start %q: %w", command, err)
}

// bgList answers GET /v1/exec: every exec not deleted, oldest first.
func (s *Server) bgList(w http.ResponseWriter, r *http.Request) {
	es := s.bg.list()
	out := make([]api.ExecBackgroundInfo, 0, len(es))
	for _, e := range es {
		out = append(out, e.info())
	}
	agent.WriteJSON(w, http.StatusOK, out)
}

// bgInfo answers GET /v1/exec/{id}.
func (s *Server) bgInfo(w http.ResponseWriter, r *http.Request) {
	e, err := s.bg.get(r.PathValue("id"))
	if err != nil {
		agent.WriteError(w, err)
		return
	}
	agent.WriteJSON(w, http.StatusOK, e.info())
}

// bgDelete answers DELETE /v1/exec/{id}: forgets a finished exec and its
// log (409 while it runs).
func (s *Server) bgDelete(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := s.bg.remove(id); err != nil {
		agent.WriteError(w, err)
		return
	}
	agent.WriteJSON(w, http.StatusOK, api.ExecDeleteResponse{ExecID: id, Reaped: true})
}

// bgKill answers POST /v1/exec/{id}/kill: signals the process group, and
// for TERM sends KILL after the grace if the process is still there. Once
// the process has exited nothing is sent (see bgExec.signal): the answer
// is 200 with an empty signal_sent, and running false (or still true for
// the moment its last output drains).
func (s *Server) bgKill(w http.ResponseWriter, r *http.Request) {
	e, err := s.bg.get(r.PathValue("id"))
	if err != nil {
		agent.WriteError(w, err)
		return
	}
	req, err := decodeKill(r.Body)
	if err != nil {
		agent.WriteError(w, err)
		return
	}
	plan, err := planKill(req)
	if err != nil {
		agent.WriteError(w, err)
		return
	}
	sent, err := e.signal(plan.sig)
	if err != nil {
		agent.WriteError(w, err)
		return
	}
	res := api.ExecKillResponse{ExecID: e.id, PID: e.proc.pid}
	if sent {
		res.SignalSent = plan.name
		if plan.escalate {
			go e.escalate(plan.grace)
		}
		s.log.Info("background exec signalled", "exec_id", e.id, "signal", plan.name)
	}
	res.Running = !e.isFinished()
	agent.WriteJSON(w, http.StatusOK, res)
}

// decodeKill reads the optional JSON body of a kill; no body means the
// defaults.
func decodeKill(body io.Reader) (api.ExecKillRequest, error) {
	var req api.ExecKillRequest
	b, err := io.ReadAll(io.LimitReader(body, maxKillBody+1))
	switch {
	case err != nil:
		return req, fmt.Errorf("%w: read kill body: %v", api.ErrInvalid, err)
	case len(b) > maxKillBody:
		return req, fmt.Errorf("%w: kill body is over %d bytes", api.ErrInvalid, maxKillBody)
	case len(bytes.TrimSpace(b)) == 0:
		return req, nil
	}
	if err := json.Unmarshal(b, &req); err != nil {
		return req, fmt.Errorf("%w: decode kill body: %v", api.ErrInvalid, err)
	}
	return req, nil
}

// bgWaitExit answers GET /v1/exec/{id}/wait-exit?timeout=N: once the exec
// has finished, or after N seconds with timed_out. A caller that goes away
// gets nothing.
func (s *Server) bgWaitExit(w http.ResponseWriter, r *http.Request) {
	timeout, err := parseWaitTimeout(r.URL.Query().Get("timeout"))
	if err != nil {
		agent.WriteError(w, err)
		return
	}
	e, err := s.bg.get(r.PathValue("id"))
	if err != nil {
		agent.WriteError(w, err)
		return
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-e.done:
	case <-t.C:
	case <-r.Context().Done():
		return
	}
	in := e.info()
	agent.WriteJSON(w, http.StatusOK, api.ExecWaitExitResponse{
		ExecID: e.id, Running: in.Running,
		ExitCode: in.ExitCode, Signal: in.Signal, EndedAt: in.EndedAt,
		TimedOut: in.Running,
	})
}

// bgLogs answers GET /v1/exec/{id}/logs?follow=&from_id=: NDJSON frames
// from from_id on, each flushed; a gap frame first when some of them were
// evicted. Without follow it ends after what the ring holds; with follow
// it waits for more and ends after the exit frame (or at once when the
// exec has finished and from_id is past its last frame).
func (s *Server) bgLogs(w http.ResponseWriter, r *http.Request) {
	q, err := parseLogsQuery(r.URL.Query())
	if err != nil {
		agent.WriteError(w, err)
		return
	}
	e, err := s.bg.get(r.PathValue("id"))
	if err != nil {
		agent.WriteError(w, err)
		return
	}
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", agent.ContentTypeNDJSON)
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		return
	}
	fw := &frameWriter{enc: json.NewEncoder(w), rc: rc}
	fw.enc.SetEscapeHTML(false)
	cur := startCursor(q.fromID)
	for {
		lr := e.read(cur)
		if err := writeLogRead(fw, lr); err != nil {
			return // the caller went away
		}
		cur = lr.next
		if !q.follow || lr.finished {
			return
		}
		select {
		case <-lr.changed:
		case <-r.Context().Done():
			return
		}
	}
}

// writeLogRead writes the frames of one read: the gap, then the entries.
func writeLogRead(fw *frameWriter, lr logRead) error {
	if lr.gap.frames > 0 {
		if err := fw.write(gapFrame(lr.gap, time.Now().UTC())); err != nil {
			return err
		}
	}
	for _, en := range lr.entries {
		if err := fw.write(logFrame(en, lr.meta)); err != nil {
			return err
		}
	}
	return nil
}
