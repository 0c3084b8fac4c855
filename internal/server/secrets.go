package server

import (
	"context"
	"fmt"
	"net/http"

	"github.com/openslicer/openslicer/api"
)

// SecretStore is what the secrets endpoints need from the host-side secret
// store (internal/secrets.Store satisfies it).
type SecretStore interface {
	Create(ctx context.Context, req api.CreateSecretRequest) (api.Secret, error)
	Update(ctx context.Context, name string, req api.UpdateSecretRequest) (api.Secret, error)
	Delete(name string) error
	List() ([]api.Secret, error)
}

// withSecrets answers 501 when the daemon runs without a secret store.
func (s *Server) withSecrets(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.secrets == nil {
			s.writeError(w, r, fmt.Errorf("secrets are not enabled on this daemon: %w", api.ErrNotImplemented))
			return
		}
		h(w, r)
	}
}

func (s *Server) listSecrets(w http.ResponseWriter, r *http.Request) {
	list, err := s.secrets.List()
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, list)
}

func (s *Server) createSecret(w http.ResponseWriter, r *http.Request) {
	var req api.CreateSecretRequest
	if err := decodeBody(w, r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	sec, err := s.secrets.Create(r.Context(), req)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.syncSecrets(r)
	writeJSON(w, http.StatusCreated, sec)
}

func (s *Server) updateSecret(w http.ResponseWriter, r *http.Request) {
	var req api.UpdateSecretRequest
	if err := decodeBody(w, r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	sec, err := s.secrets.Update(r.Context(), r.PathValue("name"), req)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.syncSecrets(r)
	writeJSON(w, http.StatusOK, sec)
}

func (s *Server) deleteSecret(w http.ResponseWriter, r *http.Request) {
	if err := s.secrets.Delete(r.PathValue("name")); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.syncSecrets(r)
	writeText(w, http.StatusOK, "deleted")
}

// syncSecrets pushes the changed store to the running VMs before the
// answer, so that a caller who then reads a secret in a guest sees the
// change. A VM that cannot take it is logged: the store did change, and
// the guest gets its set again when its agent next comes up.
func (s *Server) syncSecrets(r *http.Request) {
	if err := s.vms.SyncSecrets(r.Context()); err != nil {
		s.log.Warn("sync secrets into vms", "err", err)
	}
}
