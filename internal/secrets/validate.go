package secrets

import (
	"encoding/base64"
	"fmt"
	"io/fs"
	"strconv"

	"github.com/openslicer/openslicer/api"
)

// MaxNameLen is the longest secret name accepted.
const MaxNameLen = 253

// DefaultPermissions is the guest mode of a secret created without one.
const DefaultPermissions = "0600"

// ValidateName reports whether name can name a secret: 1 to MaxNameLen
// characters of [A-Za-z0-9._-], not starting with '.'. Such a name is a
// single safe path element on the host and in the guest. Errors wrap
// api.ErrInvalid.
func ValidateName(name string) error {
	if name == "" {
		return fmt.Errorf("secret name is empty: %w", api.ErrInvalid)
	}
	if len(name) > MaxNameLen {
		return fmt.Errorf("secret name is %d characters, more than %d: %w", len(name), MaxNameLen, api.ErrInvalid)
	}
	if name[0] == '.' {
		return fmt.Errorf("secret name %q starts with '.': %w", name, api.ErrInvalid)
	}
	for i := 0; i < len(name); i++ {
		if !nameByte(name[i]) {
			return fmt.Errorf("secret name %q has %q at %d, want only [A-Za-z0-9._-]: %w", name, name[i], i, api.ErrInvalid)
		}
	}
	return nil
}

func nameByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return c == '.' || c == '_' || c == '-'
}

// ParsePermissions parses an octal permission string such as "0600" or
// "600" into a file mode of at most 0777. Errors wrap api.ErrInvalid.
func ParsePermissions(s string) (fs.FileMode, error) {
	if s == "" {
		return 0, fmt.Errorf("permissions are empty: %w", api.ErrInvalid)
	}
	v, err := strconv.ParseUint(s, 8, 32)
	if err != nil {
		return 0, fmt.Errorf("permissions %q are not octal: %w", s, api.ErrInvalid)
	}
	if v > 0o777 {
		return 0, fmt.Errorf("permissions %q exceed 0777: %w", s, api.ErrInvalid)
	}
	return fs.FileMode(v), nil
}

// FormatPermissions renders a mode the way the API reports it: four octal
// digits, e.g. "0600".
func FormatPermissions(m fs.FileMode) string {
	return fmt.Sprintf("%04o", uint32(m.Perm()))
}

// normalPermissions parses s and returns its canonical form; "" yields
// DefaultPermissions.
func normalPermissions(s string) (string, error) {
	if s == "" {
		return DefaultPermissions, nil
	}
	m, err := ParsePermissions(s)
	if err != nil {
		return "", err
	}
	return FormatPermissions(m), nil
}

// decodeData decodes the base64 value of a request's data field. Errors
// wrap api.ErrInvalid.
func decodeData(s string) ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("secret data is not valid base64: %v: %w", err, api.ErrInvalid)
	}
	return b, nil
}
