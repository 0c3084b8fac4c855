package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/vm"
)

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	writeText(w, http.StatusOK, "OK")
}

func (s *Server) getInfo(w http.ResponseWriter, r *http.Request) {
	info := s.info
	info.Pools = s.vms.PoolStatus()
	if len(info.Pools) == 0 {
		info.Pools = nil
	}
	writeJSON(w, http.StatusOK, info)
}

// daemonShutdown stops the daemon as SIGTERM does. With detach=true (an
// OpenSlicer extension, for upgrading the daemon) persistent VMs are left
// running for the next daemon to re-attach instead.
func (s *Server) daemonShutdown(w http.ResponseWriter, r *http.Request) {
	detach := false
	if v := r.URL.Query().Get("detach"); v != "" {
		var err error
		if detach, err = strconv.ParseBool(v); err != nil {
			s.writeError(w, r, fmt.Errorf("%w: detach=%q: want true or false", api.ErrInvalid, v))
			return
		}
	}
	if detach {
		writeText(w, http.StatusAccepted, "shutting down, leaving persistent VMs running")
	} else {
		writeText(w, http.StatusAccepted, "shutting down")
	}
	s.shutdown(detach)
}

func (s *Server) listHostGroups(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.vms.HostGroups())
}

func (s *Server) listNodes(w http.ResponseWriter, r *http.Request) {
	s.list(w, r, "")
}

func (s *Server) listGroupNodes(w http.ResponseWriter, r *http.Request) {
	s.list(w, r, r.PathValue("group"))
}

func (s *Server) list(w http.ResponseWriter, r *http.Request, group string) {
	q := r.URL.Query()
	nodes, err := s.vms.List(vm.Filter{Group: group, Tag: q.Get("tag"), TagPrefix: q.Get("tag_prefix")})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, nodes)
}

func (s *Server) createNode(w http.ResponseWriter, r *http.Request) {
	var req api.CreateNodeRequest
	if err := decodeBody(w, r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	opt, err := waitOptions(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	answering := false
	opt.Answer = func(resp api.CreateNodeResponse, commit func() error) error {
		answering = true
		return answerCreate(r.Context(), w, s.log, resp, commit)
	}
	if _, err := s.vms.Create(r.Context(), r.PathValue("group"), req, opt); err != nil {
		if answering {
			// Part of a 201 is out: cut the connection, so the client sees
			// the create fail rather than a short body it might trust.
			panic(http.ErrAbortHandler)
		}
		s.writeError(w, r, err)
	}
}

func (s *Server) deleteNode(w http.ResponseWriter, r *http.Request) {
	removed, err := s.vms.Delete(r.Context(), r.PathValue("group"), r.PathValue("hostname"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, api.DeleteResponse{Message: "VM deleted", DiskRemoved: strconv.FormatBool(removed)})
}

func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	h, err := s.vms.Health(r.Context(), r.PathValue("hostname"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, h)
}

func (s *Server) logs(w http.ResponseWriter, r *http.Request) {
	lines := -1
	if v := r.URL.Query().Get("lines"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			s.writeError(w, r, fmt.Errorf("%w: lines %q is not a non-negative integer", api.ErrInvalid, v))
			return
		}
		lines = n
	}
	resp, err := s.vms.Logs(r.PathValue("hostname"), lines)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// decodeBody decodes an optional JSON body into v, rejecting unknown
// fields so that a misspelt field is an error, not silently ignored. A body
// over api.MaxJSONBodyBytes is ErrTooLarge: at once when its declared
// length says so, else once that much has been read (and the connection
// is then closed, the rest unread).
func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	if r.ContentLength > api.MaxJSONBodyBytes {
		return errBodyTooLarge(r.ContentLength)
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, api.MaxJSONBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return errBodyTooLarge(-1)
		}
		return fmt.Errorf("%w: request body: %v", api.ErrInvalid, err)
	}
	return nil
}

// errBodyTooLarge names the JSON body limit; size is the body's declared
// length, or -1 when not known.
func errBodyTooLarge(size int64) error {
	got := "larger than"
	if size >= 0 {
		got = fmt.Sprintf("%d bytes, over", size)
	}
	return fmt.Errorf("%w: the JSON body is %s the limit of %d bytes (%d MiB)", api.ErrTooLarge, got, api.MaxJSONBodyBytes, api.MaxJSONBodyBytes>>20)
}
