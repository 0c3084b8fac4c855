package server

import (
	"fmt"
	"net/http"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/vm"
)

// Commits and cold forks (spec §3.14). Their routes share the /vm/ prefix
// with /vm/{hostname}; the mux prefers the more specific pattern, so
// /vm/commits... is theirs, which reserves "commits" as a hostname (never
// one anyway: hostnames are <group>-N).

func (s *Server) commitVM(w http.ResponseWriter, r *http.Request) {
	var req api.CommitVMRequest
	if err := decodeBody(w, r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	resp, err := s.vms.Commit(r.Context(), r.PathValue("hostname"), req)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

func (s *Server) listCommits(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	commits, err := s.vms.ListCommits(vm.CommitFilter{
		Tags: q["tag"], CacheKey: q.Get("cache_key"), Source: q.Get("source"), Mode: q.Get("mode"),
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, commits)
}

func (s *Server) deleteCommit(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := s.vms.DeleteCommit(r.Context(), id); err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, api.CommitDeleteResponse{CommitID: id, Status: api.CommitStatusDeleted})
}

// forkCommit makes a VM from a commit; it is answered as a create is
// (answerJSON), with 200, the only status Slicer's SDK takes.
func (s *Server) forkCommit(w http.ResponseWriter, r *http.Request) {
	var req api.ForkVMRequest
	if err := decodeBody(w, r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	opt, err := forkOptions(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	answering := false
	opt.Answer = func(resp api.ForkVMResponse, commit func() error) error {
		answering = true
		return answerJSON(r.Context(), w, s.log, http.StatusOK, resp.Hostname, resp, commit)
	}
	if _, err := s.vms.Fork(r.Context(), r.PathValue("id"), req, opt); err != nil {
		if answering {
			panic(http.ErrAbortHandler) // part of the answer is out: cut it
		}
		s.writeError(w, r, err)
	}
}

// forkOptions parses a fork's wait (agent, the default, or none) and
// timeout.
func forkOptions(r *http.Request) (vm.ForkOptions, error) {
	wopt, err := waitOptions(r)
	if err != nil {
		return vm.ForkOptions{}, err
	}
	opt := vm.ForkOptions{Timeout: wopt.Timeout}
	switch wopt.Wait {
	case "", "agent":
	case "none":
		opt.NoWait = true
	default:
		return opt, fmt.Errorf("%w: wait %q: want agent or none", api.ErrInvalid, wopt.Wait)
	}
	return opt, nil
}
