package guest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/agent"
)

// routeSystem registers the system routes.
func (s *Server) routeSystem(mux *http.ServeMux) {
	mux.HandleFunc("PUT "+agent.PathIdentity, s.identity)
	mux.HandleFunc("POST "+agent.PathPower, s.power)
}

// identity applies the identity the host sends: 204 once all of it is
// applied. Only the agent as init has the setter; elsewhere (serve,
// tests) it is 501, so a development agent never renames its host.
func (s *Server) identity(w http.ResponseWriter, r *http.Request) {
	if s.setIdentity == nil {
		agent.WriteError(w, fmt.Errorf("setting the identity: %w (only the agent as init does)", api.ErrNotImplemented))
		return
	}
	var req agent.Identity
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		agent.WriteError(w, fmt.Errorf("%w: identity body: %w", api.ErrInvalid, err))
		return
	}
	id, err := identityOf(req)
	if err != nil {
		agent.WriteError(w, err)
		return
	}
	if err := s.setIdentity(id); err != nil {
		agent.WriteError(w, fmt.Errorf("apply identity: %w", err))
		return
	}
	s.log.Info("identity set by the host", "hostname", id.Hostname, "network", id.Network != nil,
		"machine_id", id.MachineID != "", "entropy_bytes", len(id.Entropy))
	w.WriteHeader(http.StatusNoContent)
}

// power answers 202 and flushes the answer to the host, then powers the
// guest off or reboots it: the host learns the request was taken before
// the channel goes away with the machine. Only the agent as init (or
// beside the guest's own init) has the means; elsewhere it is 501.
func (s *Server) power(w http.ResponseWriter, r *http.Request) {
	if s.doPower == nil {
		agent.WriteError(w, fmt.Errorf("power: %w (only the agent as init does)", api.ErrNotImplemented))
		return
	}
	var req agent.Power
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		agent.WriteError(w, fmt.Errorf("%w: power body: %w", api.ErrInvalid, err))
		return
	}
	action, err := powerActionOf(req)
	if err != nil {
		agent.WriteError(w, err)
		return
	}
	w.Header().Set("Content-Length", strconv.Itoa(0))
	w.WriteHeader(http.StatusAccepted)
	if err := http.NewResponseController(w).Flush(); err != nil {
		s.log.Warn("power: answer the host", "err", err)
	}
	s.log.Info("power request from the host", "action", action)
	if err := s.doPower(action); err != nil {
		s.log.Error("power", "action", action, "err", err)
	}
}
