package server

import (
	"fmt"
	"net/http"

	"github.com/openslicer/openslicer/api"
)

// notBuilt answers a documented route this daemon does not build yet: 501,
// naming the route and the feature it belongs to, so a client learns what
// is missing instead of reading a 404 as "no such VM".
func (s *Server) notBuilt(feature string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, fmt.Errorf("%s %s (%s) is not supported by this daemon yet: %w", r.Method, r.Pattern, feature, api.ErrNotImplemented))
	}
}
