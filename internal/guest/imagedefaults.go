package guest

import (
	"path"
	"strconv"
	"strings"
)

// The defaults a request gets from the image (internal/agent/imageconfig,
// the file /etc/slicer/image.json the host's image builder puts in every
// OCI image; min has none). The request's own values always win:
//
//   - Env: the image's entries replace the agent's PATH, HOME and USER and
//     come before the request's, which replace them in turn (one entry per
//     name, in the order names first appear).
//   - WorkingDir: where a request without cwd starts, when it is a
//     directory; else the user's home, as without it.
//   - User: who a request without uid acts as (exec, shell, copies, the
//     file-system routes, first boot's keys and TARGET_USER), when it names
//     a non-root user: Slicer's contract is that an omitted uid means the
//     default non-root user. A root, empty or unknown User leaves the
//     default to the uid-1000 account, which every OCI image has (the
//     image builder adds "ubuntu" where the image lacks one).

// imageUser resolves an OCI config User ("name", "uid", "name:group",
// "uid:gid", any mix) against the image's accounts and groups. A uid the
// image does not list is used as it is, with gid 0 and home "/" as
// Docker does; a name it does not list resolves to nothing (ok false), as
// does a group name it does not list.
func imageUser(spec string, accounts []account, groups []group) (account, bool) {
	userPart, groupPart, hasGroup := strings.Cut(strings.TrimSpace(spec), ":")
	if userPart == "" {
		return account{}, false
	}
	var a account
	found := false
	n, numErr := strconv.ParseUint(userPart, 10, 32)
	for _, acc := range accounts {
		if (numErr == nil && acc.UID == uint32(n)) || (numErr != nil && acc.Name == userPart) {
			a, found = acc, true
			break
		}
	}
	switch {
	case found:
	case numErr == nil:
		a = account{UID: uint32(n), GID: 0, Home: "/"}
	default:
		return account{}, false
	}
	if hasGroup && groupPart != "" {
		gid, ok := groupID(groupPart, groups)
		if !ok {
			return account{}, false
		}
		a.GID = gid
	}
	return a, true
}

// groupID resolves a group given by number or name.
func groupID(spec string, groups []group) (uint32, bool) {
	if n, err := strconv.ParseUint(spec, 10, 32); err == nil {
		return uint32(n), true
	}
	for _, g := range groups {
		if g.Name == spec {
			return g.GID, true
		}
	}
	return 0, false
}

// defaultAccount is who a request without uid acts as: the image's User
// when it resolves to a non-root user, else the image's uid-1000 account,
// else root.
func defaultAccount(user string, accounts []account, groups []group) account {
	if a, ok := imageUser(user, accounts, groups); ok && a.UID != 0 {
		return a
	}
	for _, a := range accounts {
		if a.UID == defaultUID {
			return a
		}
	}
	return rootAccount(accounts)
}

// rootAccount is the image's uid-0 account, or a bare root.
func rootAccount(accounts []account) account {
	for _, a := range accounts {
		if a.UID == 0 {
			return a
		}
	}
	return account{Name: "root", Home: "/root"}
}

// mergeEnv returns the KEY=VALUE entries of the lists, a later entry
// replacing an earlier one of the same name where that stood. Entries
// without "=" or with an empty name are dropped (the request's are
// refused before they get here).
func mergeEnv(lists ...[]string) []string {
	var out []string
	at := map[string]int{}
	for _, l := range lists {
		for _, e := range l {
			k, _, ok := strings.Cut(e, "=")
			if !ok || k == "" {
				continue
			}
			if i, seen := at[k]; seen {
				out[i] = e
				continue
			}
			at[k] = len(out)
			out = append(out, e)
		}
	}
	return out
}

// imageWorkDir is the image's WorkingDir as a clean absolute path ("" when
// it sets none); Docker takes a relative one from /.
func imageWorkDir(dir string) string {
	if dir == "" {
		return ""
	}
	return path.Join("/", dir)
}
