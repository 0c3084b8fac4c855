package guest

import (
	"errors"
	"fmt"
	"io/fs"
	"slices"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/agent"
)

// The guest's side of the secrets (see agent.SecretFile for the two ways
// they arrive). pathSecretsSync is the route of the control socket, which
// only programs in the guest reach.
const pathSecretsSync = "/v1/secrets/sync" // POST

// ControlSocket is the guest-local unix socket on which PID 1 takes
// requests from programs in the guest (`slicer-agent secrets sync`). It is
// mode 0600 and owned by root.
const ControlSocket = "/run/slicer/agent.sock"

const (
	// maxSecretsBody bounds a request or answer carrying secrets.
	maxSecretsBody = 64 << 20
	// maxSecretNameLen is the longest secret name accepted; it matches
	// the host store's limit (internal/secrets.MaxNameLen).
	maxSecretNameLen = 253
)

// syncResult is the answer of the control socket's sync: the names of the
// secrets the guest holds now, sorted.
type syncResult struct {
	Synced []string `json:"synced"`
}

// checkSecretFiles validates a set of secrets before any of it is written:
// every name is a safe single path element, no name is repeated, and every
// mode parses. Errors wrap api.ErrInvalid and name the secret.
func checkSecretFiles(files []agent.SecretFile) error {
	seen := make(map[string]bool, len(files))
	var errs []error
	for _, f := range files {
		if err := validateSecretName(f.Name); err != nil {
			errs = append(errs, err)
			continue
		}
		if seen[f.Name] {
			errs = append(errs, fmt.Errorf("secret %q is given twice", f.Name))
		}
		seen[f.Name] = true
		if _, err := parseSecretMode(f.Permissions); err != nil {
			errs = append(errs, fmt.Errorf("secret %q: %w", f.Name, err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", api.ErrInvalid, errors.Join(errs...))
	}
	return nil
}

// validateSecretName mirrors the host store's rule (the agent may not
// import it): 1 to maxSecretNameLen characters of [A-Za-z0-9._-], not
// starting with '.'. Such a name is one path element that is not "." or
// "..", and never collides with the agent's temporary files.
func validateSecretName(name string) error {
	switch {
	case name == "":
		return errors.New("secret name is empty")
	case len(name) > maxSecretNameLen:
		return fmt.Errorf("secret name is %d characters, more than %d", len(name), maxSecretNameLen)
	case name[0] == '.':
		return fmt.Errorf("secret name %q starts with '.'", name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		ok := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-'
		if !ok {
			return fmt.Errorf("secret name %q has %q at %d, want only [A-Za-z0-9._-]", name, c, i)
		}
	}
	return nil
}

// parseSecretMode parses an octal mode such as "0600" or "600", at most
// 0777.
func parseSecretMode(s string) (fs.FileMode, error) {
	if s == "" {
		return 0, errors.New("permissions are empty")
	}
	v, ok := parseOctal(s, 0o7777)
	switch {
	case !ok:
		return 0, fmt.Errorf("permissions %q are not octal", s)
	case v > 0o777:
		return 0, fmt.Errorf("permissions %q exceed 0777", s)
	}
	return fs.FileMode(v), nil
}

// staleEntries returns the names in have (a directory's entries) that the
// set want does not hold, in the order of have.
func staleEntries(have []string, want []agent.SecretFile) []string {
	keep := make(map[string]bool, len(want))
	for _, f := range want {
		keep[f.Name] = true
	}
	var out []string
	for _, name := range have {
		if !keep[name] {
			out = append(out, name)
		}
	}
	return out
}

// secretNames returns the names of files, sorted.
func secretNames(files []agent.SecretFile) []string {
	names := make([]string, 0, len(files))
	for _, f := range files {
		names = append(names, f.Name)
	}
	slices.Sort(names)
	return names
}
