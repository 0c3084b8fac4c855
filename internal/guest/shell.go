package guest

import (
	"fmt"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"

	"github.com/openslicer/openslicer/api"
)

// fallbackShell is the shell used when none is asked for and the user's
// login shell is unknown or unusable; the min image has busybox's.
const fallbackShell = "/bin/sh"

// defaultTerm is TERM in a shell session.
const defaultTerm = "xterm-256color"

// shellRequest is what a shell session is asked for.
type shellRequest struct {
	UID, GID *uint32 // nil: the image's default user, its group
	Shell    string  // empty: the user's login shell
	Cwd      string  // empty: the user's home
}

// parseShellQuery decodes the query of /v1/shell (uid, gid, shell, cwd,
// all optional; the public shell query). Errors wrap api.ErrInvalid.
func parseShellQuery(q url.Values) (shellRequest, error) {
	req := shellRequest{Shell: q.Get("shell"), Cwd: q.Get("cwd")}
	var err error
	if req.UID, err = queryUint32(q, "uid"); err != nil {
		return shellRequest{}, err
	}
	if req.GID, err = queryUint32(q, "gid"); err != nil {
		return shellRequest{}, err
	}
	return req, nil
}

// queryUint32 reads an optional 32-bit unsigned integer parameter.
func queryUint32(q url.Values, name string) (*uint32, error) {
	v := q.Get(name)
	if v == "" {
		return nil, nil
	}
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("%w: %s %q is not a 32-bit unsigned integer", api.ErrInvalid, name, v)
	}
	u := uint32(n)
	return &u, nil
}

// loginShell returns the login shell passwd(5) gives uid, or "" when it
// gives none or one that refuses logins (nologin, false).
func loginShell(passwd []byte, uid uint32) string {
	for _, u := range parsePasswd(passwd) {
		if u.UID != uid {
			continue
		}
		switch path.Base(u.Shell) {
		case "nologin", "false", ".", "/":
			return ""
		}
		return u.Shell
	}
	return ""
}

// loginArgv0 is argv[0] for shell started as a login shell: its base name
// with a leading dash, the convention login(1) and sshd follow, so that
// the shell reads the profile files.
func loginArgv0(shell string) string {
	return "-" + path.Base(shell)
}

// wantsUpgrade reports whether r asks to switch to protocol
// ("Connection: Upgrade", "Upgrade: protocol").
func wantsUpgrade(r *http.Request, protocol string) bool {
	return headerHasToken(r.Header, "Connection", "upgrade") && headerHasToken(r.Header, "Upgrade", protocol)
}

// headerHasToken reports whether a comma-separated header holds token,
// ignoring case.
func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// upgradeError is the error for a request to route that does not ask to
// switch to protocol.
func upgradeError(route, protocol string) error {
	return fmt.Errorf("%w: %s needs the headers Connection: Upgrade and Upgrade: %s", api.ErrInvalid, route, protocol)
}
