package server

import (
	"fmt"
	"net/http"

	"github.com/openslicer/openslicer/api"
)

// guest passes a request through to the agent route path (being built).
func (s *Server) guest(path string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, fmt.Errorf("%s: %w", path, api.ErrNotImplemented))
	}
}
