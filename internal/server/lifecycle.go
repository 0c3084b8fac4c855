package server

import (
	"net/http"
	"time"

	"fmt"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/vm"
)

func (s *Server) describe(w http.ResponseWriter, r *http.Request) {
	d, err := s.vms.Describe(r.PathValue("hostname"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, d)
}

func (s *Server) getTags(w http.ResponseWriter, r *http.Request) {
	tags, err := s.vms.Tags(r.PathValue("hostname"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, tags)
}

func (s *Server) patchTags(w http.ResponseWriter, r *http.Request) {
	var u api.VMTagUpdate
	if err := decodeBody(w, r, &u); err != nil {
		s.writeError(w, r, err)
		return
	}
	tags, err := s.vms.UpdateTags(r.Context(), r.PathValue("hostname"), u)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, tags)
}

func (s *Server) pause(w http.ResponseWriter, r *http.Request) {
	s.lifecycle(w, r, s.vms.Pause(r.Context(), r.PathValue("hostname")), "paused")
}

func (s *Server) resume(w http.ResponseWriter, r *http.Request) {
	s.lifecycle(w, r, s.vms.Resume(r.Context(), r.PathValue("hostname")), "resumed")
}

// shutdown takes the action from the query (Go SDK) or a JSON body (TS SDK).
func (s *Server) shutdownVM(w http.ResponseWriter, r *http.Request) {
	action := r.URL.Query().Get("action")
	if action == "" {
		var body api.ShutdownRequest
		if err := decodeBody(w, r, &body); err != nil {
			s.writeError(w, r, err)
			return
		}
		action = body.Action
	}
	s.lifecycle(w, r, s.vms.Shutdown(r.Context(), r.PathValue("hostname"), action), "shutdown requested")
}

func (s *Server) lifecycle(w http.ResponseWriter, r *http.Request, err error, done string) {
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeText(w, http.StatusOK, done)
}

func (s *Server) relaunch(w http.ResponseWriter, r *http.Request) {
	opt, err := waitOptions(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	resp, err := s.vms.Relaunch(r.Context(), r.PathValue("hostname"), opt)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// waitOptions parses the wait and timeout query parameters.
func waitOptions(r *http.Request) (vm.CreateOptions, error) {
	q := r.URL.Query()
	opt := vm.CreateOptions{Wait: q.Get("wait")}
	if t := q.Get("timeout"); t != "" {
		d, err := time.ParseDuration(t)
		if err != nil {
			return opt, fmt.Errorf("%w: timeout %q is not a duration (e.g. 2m0s)", api.ErrInvalid, t)
		}
		opt.Timeout = d
	}
	return opt, nil
}

// stats serves GET /nodes/stats and GET /node/{hostname}/stats.
func (s *Server) stats(w http.ResponseWriter, r *http.Request) {
	stats, err := s.vms.Stats(r.Context(), r.PathValue("hostname"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, stats)
}

func (s *Server) suspend(w http.ResponseWriter, r *http.Request) {
	s.lifecycle(w, r, s.vms.Suspend(r.Context(), r.PathValue("hostname")), "suspended")
}

func (s *Server) restore(w http.ResponseWriter, r *http.Request) {
	opt, err := waitOptions(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.lifecycle(w, r, s.vms.Restore(r.Context(), r.PathValue("hostname"), opt), "restored")
}
