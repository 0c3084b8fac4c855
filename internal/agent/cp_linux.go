package agent

import "net/http"

// routeCopy registers the routes of this file (placeholder, being built).
func (s *Server) routeCopy(mux *http.ServeMux) {}
