package guest

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/agent/imageconfig"
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

// imageConfig reads the image's defaults (imageconfig.Path, under etcDir);
// a missing file (min) is none, a broken one is logged and none.
func (s *Server) imageConfig() imageconfig.Config {
	p := filepath.Join(s.etcDir, strings.TrimPrefix(imageconfig.Path, "/etc/"))
	data, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return imageconfig.Config{}
	}
	var c imageconfig.Config
	if err == nil {
		c, err = imageconfig.Parse(data)
	}
	if err != nil {
		s.log.Warn("image defaults ignored", "file", p, "err", err)
	}
	return c
}

// defaultUser is the account a request without uid acts as
// (defaultAccount, with the image's User).
func (s *Server) defaultUser(accounts []account, groups []group) account {
	return defaultAccount(s.imageConfig().User, accounts, groups)
}

// user is the account a request acts as: nil uid means the default user
// (the image's non-root User, else uid 1000, else root), 0 means root.
// gid, when set, replaces the account's primary group.
func (s *Server) user(uid, gid *uint32) account {
	accounts, groups := s.readAccounts()
	a := resolveUser(uid, s.defaultUser(accounts, groups), accounts)
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
