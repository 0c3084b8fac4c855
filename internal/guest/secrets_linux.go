package guest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/agent"
)

// secretTempPrefix starts the name of a file being written. Secret names
// never start with '.', so it cannot be taken for a secret.
const secretTempPrefix = ".tmp-"

// routeSecrets registers the host's push of the VM's secrets.
func (s *Server) routeSecrets(mux *http.ServeMux) {
	mux.HandleFunc("PUT "+agent.PathSecrets, s.putSecrets)
}

// putSecrets takes the VM's complete set of secrets: PUT /v1/secrets with
// a JSON []agent.SecretFile body. It answers 204 once the secrets directory
// holds exactly that set, 400 (and writes nothing) for a bad body, name or
// mode.
func (s *Server) putSecrets(w http.ResponseWriter, r *http.Request) {
	files, err := decodeSecretFiles(r.Body)
	if err != nil {
		agent.WriteError(w, err)
		return
	}
	if err := s.applySecrets(files); err != nil {
		agent.WriteError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// decodeSecretFiles reads and checks a JSON []agent.SecretFile; null is the
// empty set. Errors wrap api.ErrInvalid.
func decodeSecretFiles(r io.Reader) ([]agent.SecretFile, error) {
	var files []agent.SecretFile
	if err := json.NewDecoder(io.LimitReader(r, maxSecretsBody)).Decode(&files); err != nil {
		return nil, fmt.Errorf("%w: decode secrets: %v", api.ErrInvalid, err)
	}
	if err := checkSecretFiles(files); err != nil {
		return nil, err
	}
	return files, nil
}

// applySecrets makes the secrets directory hold exactly files, which have
// passed checkSecretFiles: each is written to a temporary file, given its
// owner and mode, and renamed into place, so a reader sees the old value
// or the new one; then whatever else the directory holds is removed. The
// directory is a tmpfs, so nothing is fsynced.
func (s *Server) applySecrets(files []agent.SecretFile) error {
	s.secrets.Lock()
	defer s.secrets.Unlock()
	dir := s.paths.secretsDir
	if err := ensureSecretsDir(dir); err != nil {
		return err
	}
	var errs []error
	for _, f := range files {
		if err := writeSecretFile(dir, f); err != nil {
			errs = append(errs, err)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("read secrets dir: %w", err))...)
	}
	have := make([]string, len(entries))
	for i, e := range entries {
		have[i] = e.Name()
	}
	for _, name := range staleEntries(have, files) {
		if err := os.RemoveAll(filepath.Join(dir, name)); err != nil {
			errs = append(errs, fmt.Errorf("remove stale secret: %w", err))
		}
	}
	return errors.Join(errs...)
}

// ensureSecretsDir makes dir a directory owned by root (when the agent is
// root, as PID 1 is) with mode 0755, so that every user can reach the
// secrets whose own mode lets them read.
func ensureSecretsDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create secrets dir: %w", err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("secrets dir: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("secrets dir %s is not a directory", dir)
	}
	if os.Geteuid() == 0 {
		if err := os.Lchown(dir, 0, 0); err != nil {
			return fmt.Errorf("secrets dir: %w", err)
		}
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return fmt.Errorf("secrets dir: %w", err)
	}
	return nil
}

// writeSecretFile replaces dir/f.Name with f. The temporary file is
// created 0600 by the agent's user and only then given f's owner and
// mode, so the value is never readable by anyone f does not allow.
func writeSecretFile(dir string, f agent.SecretFile) (err error) {
	mode, err := parseSecretMode(f.Permissions)
	if err != nil {
		return fmt.Errorf("secret %q: %w: %w", f.Name, err, api.ErrInvalid)
	}
	tmp, err := os.CreateTemp(dir, secretTempPrefix+"*")
	if err != nil {
		return fmt.Errorf("write secret %q: %w", f.Name, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(f.Data); err != nil {
		return fmt.Errorf("write secret %q: %w", f.Name, err)
	}
	// Owner first: chown may clear mode bits.
	if err := tmp.Chown(int(f.UID), int(f.GID)); err != nil {
		return fmt.Errorf("secret %q: %w", f.Name, err)
	}
	if err := tmp.Chmod(mode); err != nil {
		return fmt.Errorf("secret %q: %w", f.Name, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write secret %q: %w", f.Name, err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, f.Name)); err != nil {
		return fmt.Errorf("write secret %q: %w", f.Name, err)
	}
	return nil
}
