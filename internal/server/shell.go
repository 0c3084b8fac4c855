package server

import (
	"fmt"
	"net/http"

	"github.com/openslicer/openslicer/api"
)

// shell bridges a WebSocket to a PTY in the guest (placeholder, being built).
func (s *Server) shell(w http.ResponseWriter, r *http.Request) {
	s.writeError(w, r, fmt.Errorf("shell: %w", api.ErrNotImplemented))
}

// forward bridges a WebSocket to a connection in the guest (placeholder,
// being built).
func (s *Server) forward(w http.ResponseWriter, r *http.Request) {
	s.writeError(w, r, fmt.Errorf("forward: %w", api.ErrNotImplemented))
}
