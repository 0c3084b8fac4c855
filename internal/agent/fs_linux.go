package agent

import "net/http"

// routeFS registers the routes of this file (placeholder, being built).
func (s *Server) routeFS(mux *http.ServeMux) {}
