package agent

import "net/http"

// routeBackground registers the routes of this file (placeholder, being built).
func (s *Server) routeBackground(mux *http.ServeMux) {}

// bgRegistry holds the background execs (placeholder, being built).
type bgRegistry struct{}
