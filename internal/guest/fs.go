package guest

import (
	"fmt"
	"io/fs"
	"strconv"
	"strings"

	"github.com/openslicer/openslicer/api"
)

// Entry types of api.FSInfo.
const (
	fsTypeFile      = "file"
	fsTypeDirectory = "directory"
	fsTypeSymlink   = "symlink"
)

// defaultDirMode is the mode of directories mkdir creates when the request
// names none, and of the missing parents a recursive mkdir creates.
const defaultDirMode = 0o755

// fsPathResponse is the 200 body of mkdir and remove: the resolved path.
type fsPathResponse struct {
	Path string `json:"path"`
}

// fsInfo describes fi (from an lstat) as an api.FSInfo called name.
func fsInfo(name string, fi fs.FileInfo) api.FSInfo {
	return api.FSInfo{
		Name:  name,
		Type:  fsType(fi.Mode()),
		Size:  fi.Size(),
		Mtime: fi.ModTime().UTC(),
		Mode:  fsModeString(fi.Mode()),
	}
}

// fsType is the api.FSInfo type of a mode from lstat: anything that is
// neither a directory nor a symlink (devices, fifos, sockets too) is a
// file.
func fsType(m fs.FileMode) string {
	switch {
	case m&fs.ModeSymlink != 0:
		return fsTypeSymlink
	case m.IsDir():
		return fsTypeDirectory
	}
	return fsTypeFile
}

// fsModeString is the mode of api.FSInfo: four octal digits, the
// permission bits plus setuid (4000), setgid (2000) and sticky (1000), as
// chmod(1) takes them: "0644", "4755", "1777".
func fsModeString(m fs.FileMode) string {
	return fmt.Sprintf("%04o", unixPerm(m))
}

// unixPerm converts the permission and special bits of m to their
// chmod(2) values.
func unixPerm(m fs.FileMode) uint32 {
	p := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		p |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		p |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		p |= 0o1000
	}
	return p
}

// parseDirMode parses the mode of a mkdir request: octal, with or without
// a leading 0 or 0o, at most 07777; empty is defaultDirMode.
func parseDirMode(s string) (uint32, error) {
	if s == "" {
		return defaultDirMode, nil
	}
	m, ok := parseOctal(s, 0o7777)
	if !ok {
		return 0, fmt.Errorf("%w: mode %q is not an octal mode like 0755", api.ErrInvalid, s)
	}
	return m, nil
}

// parseOctal parses an octal mode, with or without a leading 0, 0o or 0O,
// of at most max. Every mode a request carries goes through it.
func parseOctal(s string, max uint32) (uint32, bool) {
	digits := strings.TrimPrefix(strings.TrimPrefix(s, "0o"), "0O")
	m, err := strconv.ParseUint(digits, 8, 32)
	if err != nil || digits == "" || m > uint64(max) {
		return 0, false
	}
	return uint32(m), true
}

// parseOptionalBool parses a boolean query parameter: missing or empty is
// false.
func parseOptionalBool(param, v string) (bool, error) {
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%w: %s=%q is not true or false", api.ErrInvalid, param, v)
	}
	return b, nil
}
