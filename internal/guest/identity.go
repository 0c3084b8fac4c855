package guest

import (
	"fmt"
	"slices"

	"github.com/openslicer/openslicer/api"
)

// Who copies, file-system requests and watches act as (spec §3.8-§3.10):
// the uid (and gid) the request names, the image's default user when it
// names none, root only for uid 0. They act with exactly that user's
// permissions, as an exec with the same uid would: the agent, which is
// root, takes the user's file-system identity on for the work (see
// actor.do), so the kernel makes every permission check, symbolic links
// and ".." included, and what the work creates belongs to the user
// without any chown. Paths are not checked by the agent beyond their
// syntax: a relative path that climbs out of the home directory with ".."
// reaches only what the user could reach anyway.

// actor is who a request acts as, and how the agent becomes them.
type actor struct {
	account          // UID, GID (the group of what is created), Home, Name
	groups  []uint32 // supplementary groups, as initgroups(3) sets them
	// assume: the agent is root, and takes this identity on for the work.
	// Otherwise the agent already is this user (tests run it unprivileged).
	assume bool
	// chownGID: the agent is this user but runs with another group; what
	// it creates is then chowned to GID, which the kernel allows when the
	// user is a member of it.
	chownGID bool
}

// planActor decides how an agent running as euid and egid acts as a,
// whose supplementary groups groups lists. Root becomes anyone. Any other
// agent can only be itself: asked to act as someone else it refuses,
// rather than act with permissions that are not the user's.
func planActor(a account, groups []group, euid, egid int) (actor, error) {
	act := actor{account: a, groups: memberGroups(a.Name, a.GID, groups)}
	switch {
	case euid == 0:
		act.assume = true
	case int64(a.UID) == int64(euid):
		act.chownGID = int64(a.GID) != int64(egid)
	default:
		return actor{}, fmt.Errorf("%w: the agent runs as uid %d and cannot act as uid %d", api.ErrForbidden, euid, a.UID)
	}
	return act, nil
}

// memberGroups is the group list of a process of user name with primary
// group gid, as initgroups(3) makes it: gid, then every group that lists
// the user as a member. A user the image does not name has no groups
// besides gid's, which setgroups(2) then does not list.
func memberGroups(name string, gid uint32, groups []group) []uint32 {
	if name == "" {
		return nil
	}
	out := []uint32{gid}
	for _, g := range groups {
		if slices.Contains(g.Members, name) && !slices.Contains(out, g.GID) {
			out = append(out, g.GID)
		}
	}
	return out
}

// owner is how what the actor creates gets its owner: nothing to do when
// the agent took the identity on or already has it; a chown to the group
// otherwise.
func (a actor) owner() owner {
	return owner{uid: int(a.UID), gid: int(a.GID), chown: a.chownGID}
}
