package agent

import "net/http"

// routeSecrets registers the routes of this file (placeholder, being built).
func (s *Server) routeSecrets(mux *http.ServeMux) {}
