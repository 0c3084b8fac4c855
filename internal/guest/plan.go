package guest

import (
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/accounts"
	"github.com/openslicer/openslicer/internal/agent/imageconfig"
)

// defaultUID is the image's unprivileged user, used when a request names no
// uid (Slicer's images have "ubuntu" or "slicer" there).
const defaultUID = 1000

// defaultPath is the PATH commands run with.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// account and group are the account files' entries (package accounts).
type (
	account = accounts.User
	group   = accounts.Group
)

// parsePasswd and parseGroup read /etc/passwd and /etc/group.
var (
	parsePasswd = accounts.ParsePasswd
	parseGroup  = accounts.ParseGroup
)

// procSpec is everything needed to start a process.
type procSpec struct {
	Argv   []string // Argv[0] is looked up in the PATH of Env unless it has a slash
	Env    []string
	Dir    string
	UID    uint32
	GID    uint32
	Groups []uint32 // supplementary groups
}

// planExec works out how to run req: the user and groups (from the image's
// accounts), the environment, the working directory and argv, with the
// image's defaults img where req says nothing (imagedefaults.go). isDir
// reports whether a directory exists. Errors wrap api.ErrInvalid.
func planExec(req *api.ExecRequest, accounts []account, groups []group, img imageconfig.Config, isDir func(string) bool) (procSpec, error) {
	user := resolveUser(req.UID, defaultAccount(img.User, accounts, groups), accounts)
	sp := procSpec{UID: user.UID, GID: user.GID}
	if req.GID != nil {
		sp.GID = *req.GID
	}
	sp.Groups = memberGroups(user.Name, sp.GID, groups)

	base := []string{"PATH=" + defaultPath, "HOME=" + user.Home}
	if user.Name != "" {
		base = append(base, "USER="+user.Name)
	}
	for _, e := range req.Env {
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
			return procSpec{}, fmt.Errorf("%w: env %q: want KEY=VALUE", api.ErrInvalid, e)
		}
	}
	sp.Env = mergeEnv(base, img.Env, req.Env)

	sp.Dir = workDir(req.Cwd, user.Home, isDir)
	if wd := imageWorkDir(img.WorkingDir); req.Cwd == "" && wd != "" && isDir(wd) {
		sp.Dir = wd
	}

	if req.Shell != "" {
		sp.Argv = []string{req.Shell, "-c", strings.Join(append([]string{req.Command}, req.Args...), " ")}
	} else {
		sp.Argv = append([]string{req.Command}, req.Args...)
	}
	return sp, nil
}

// resolveUser picks the account a command runs as. No uid means def, the
// default user (defaultAccount); an explicit uid is taken as given, with
// its name, group and home when the image knows it.
func resolveUser(uid *uint32, def account, accounts []account) account {
	if uid == nil {
		return def
	}
	for _, a := range accounts {
		if a.UID == *uid {
			return a
		}
	}
	if *uid == 0 {
		return rootAccount(accounts)
	}
	return account{UID: *uid, GID: *uid, Home: "/"}
}

// workDir resolves the requested working directory: empty means the user's
// home, or / when it does not exist; "~" and "~/p" are relative to the home,
// as are other relative paths.
func workDir(cwd, home string, isDir func(string) bool) string {
	switch {
	case cwd == "":
		if home != "" && isDir(home) {
			return home
		}
		return "/"
	case cwd == "~":
		return home
	case strings.HasPrefix(cwd, "~/"):
		return path.Join(home, cwd[2:])
	case !path.IsAbs(cwd):
		return path.Join(home, cwd)
	}
	return path.Clean(cwd)
}

// lookPath finds the executable for name in the directories of pathList,
// the way a shell does. A name with a slash is used as it is. The error
// reads like os/exec's and wraps exec.ErrNotFound.
func lookPath(name, pathList string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	for _, dir := range filepath.SplitList(pathList) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("exec: %q: %w", name, exec.ErrNotFound)
}

// envValue returns the last value of key in env.
func envValue(env []string, key string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if k, v, ok := strings.Cut(env[i], "="); ok && k == key {
			return v
		}
	}
	return ""
}
