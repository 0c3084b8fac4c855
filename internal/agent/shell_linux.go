package agent

import "net/http"

// routeShell registers the routes of this file (placeholder, being built).
func (s *Server) routeShell(mux *http.ServeMux) {}
