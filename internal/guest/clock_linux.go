package guest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/agent"
)

// routeClock registers PUT /v1/clock.
func (s *Server) routeClock(mux *http.ServeMux) {
	mux.HandleFunc("PUT "+agent.PathClock, s.clock)
}

// clock sets the guest's wall clock to the host's: a guest that was
// suspended or paused has a clock that stood still meanwhile. Only the
// agent as init has a setter; elsewhere (serve, tests) it is 501, so a
// development agent never changes its host's clock.
func (s *Server) clock(w http.ResponseWriter, r *http.Request) {
	if s.setClock == nil {
		agent.WriteError(w, fmt.Errorf("setting the clock: %w (only the agent as init does)", api.ErrNotImplemented))
		return
	}
	var c agent.Clock
	if err := json.NewDecoder(r.Body).Decode(&c); err != nil || c.UnixNano <= 0 {
		agent.WriteError(w, fmt.Errorf("%w: clock body: want {\"unix_nano\": N} with N > 0", api.ErrInvalid))
		return
	}
	before := time.Now()
	if err := s.setClock(time.Unix(0, c.UnixNano)); err != nil {
		agent.WriteError(w, fmt.Errorf("set clock: %w", err))
		return
	}
	s.log.Debug("clock set from the host", "moved", time.Unix(0, c.UnixNano).Sub(before).Round(time.Millisecond))
	w.WriteHeader(http.StatusNoContent)
}
