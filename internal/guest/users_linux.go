package guest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/openslicer/openslicer/api"
)

// readAccounts reads the image's passwd and group files; a missing file is
// no accounts.
func (s *Server) readAccounts() ([]account, []group) {
	passwd, err := os.ReadFile(filepath.Join(s.etcDir, "passwd"))
	if err != nil && !os.IsNotExist(err) {
		s.log.Warn("read passwd", "err", err)
	}
	grp, err := os.ReadFile(filepath.Join(s.etcDir, "group"))
	if err != nil && !os.IsNotExist(err) {
		s.log.Warn("read group", "err", err)
	}
	return parsePasswd(passwd), parseGroup(grp)
}

// user is the account a request acts as: nil uid means the image's uid-1000
// user (root when the image has none), 0 means root. gid, when set,
// replaces the account's primary group.
func (s *Server) user(uid, gid *uint32) account {
	accounts, _ := s.readAccounts()
	a := resolveUser(uid, accounts)
	if gid != nil {
		a.GID = *gid
	}
	return a
}

// guestPath resolves a path a request names: "~" and "~/p" are relative to
// home, other relative paths too; the result is clean and absolute. ".."
// is resolved like any other component: what it reaches is checked by the
// kernel against the user the request acts as. An empty path, or one with
// a NUL byte (which no file name can hold, and the kernel would refuse as
// an invalid argument), is an error naming param.
func guestPath(param, p, home string) (string, error) {
	switch {
	case p == "":
		return "", fmt.Errorf("%w: %s is required", api.ErrInvalid, param)
	case strings.ContainsRune(p, 0):
		return "", fmt.Errorf("%w: %s %q contains a NUL byte", api.ErrInvalid, param, p)
	}
	return workDir(p, home, func(string) bool { return true }), nil
}
