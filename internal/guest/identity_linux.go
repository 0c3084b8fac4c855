package guest

import (
	"fmt"
	"os"
	"runtime"
	"slices"

	"golang.org/x/sys/unix"
)

// actor resolves who a request with uid and gid (nil: not given) acts as:
// the account resolveUser picks, gid replacing its primary group.
func (s *Server) actor(uid, gid *uint32) (actor, error) {
	accounts, groups := s.readAccounts()
	a := resolveUser(uid, s.defaultUser(accounts, groups), accounts)
	if gid != nil {
		a.GID = *gid
	}
	return planActor(a, groups, os.Geteuid(), os.Getegid())
}

// do runs fn as the actor and returns its error; a panic in fn is raised
// again in the caller.
//
// When the agent takes the identity on (it is root), fn runs on an OS
// thread of its own whose file-system uid, file-system gid and
// supplementary groups are the user's (setfsuid(2), setfsgid(2),
// setgroups(2), which on Linux act on the calling thread only). A
// non-zero file-system uid also clears the capabilities that bypass file
// permissions (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER,
// CAP_CHOWN, CAP_FSETID, ...) from the thread's effective set, so the
// kernel checks every open, create, rename, remove, chmod, utimes and
// inotify watch of fn as it would the user's, at the moment it happens:
// no check of ours can be raced. The thread keeps capabilities that do not
// concern permissions (CAP_SYS_RESOURCE, for one, still lets it use the
// file system's reserved blocks). The rest of the agent is untouched.
//
// fn must do its file work itself, not in goroutines it starts: those
// would run on other threads, as root. Once fn returns the thread gets the
// agent's identity back and goes back to the pool; if that fails the
// thread stays locked and ends with its goroutine, so no other goroutine
// ever runs with a user's identity. Nor does a thread cloned meanwhile
// (clone copies credentials): while a goroutine is locked to its thread,
// the Go runtime starts new threads from a template thread, never from
// the locked one.
func (a actor) do(fn func() error) error {
	if !a.assume {
		return fn()
	}
	type result struct {
		err      error
		panicked bool
		value    any
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		var res result
		defer func() { done <- res }()
		own, err := threadIdentity()
		if err != nil {
			res.err = err
			runtime.UnlockOSThread() // nothing was changed
			return
		}
		if err := setThreadIdentity(a.identity()); err != nil {
			res.err = fmt.Errorf("act as uid %d: %w", a.UID, err)
			if setThreadIdentity(own) == nil {
				runtime.UnlockOSThread()
			}
			return
		}
		func() {
			defer func() {
				if v := recover(); v != nil {
					res.panicked, res.value = true, v
				}
			}()
			res.err = fn()
		}()
		if setThreadIdentity(own) == nil {
			runtime.UnlockOSThread()
		}
	}()
	res := <-done
	if res.panicked {
		panic(res.value)
	}
	return res.err
}

// fsIdentity is the identity a thread's file operations are checked
// against.
type fsIdentity struct {
	uid, gid int
	groups   []int
}

// identity is the actor's fsIdentity.
func (a actor) identity() fsIdentity {
	id := fsIdentity{uid: int(a.UID), gid: int(a.GID), groups: []int{}}
	for _, g := range a.groups {
		id.groups = append(id.groups, int(g))
	}
	return id
}

// threadIdentity reads the calling thread's identity. setfsuid(2) and
// setfsgid(2) with an invalid id (-1) change nothing and return the
// current one.
func threadIdentity() (fsIdentity, error) {
	uid, _ := unix.SetfsuidRetUid(-1)
	gid, _ := unix.SetfsgidRetGid(-1)
	groups, err := unix.Getgroups()
	if err != nil {
		return fsIdentity{}, fmt.Errorf("read the thread's groups: %w", err)
	}
	if groups == nil {
		groups = []int{}
	}
	return fsIdentity{uid: uid, gid: gid, groups: groups}, nil
}

// setThreadIdentity gives the calling thread, which must be locked to its
// goroutine, the file-system identity id, and checks that it has it:
// setfsuid(2) and setfsgid(2) do not report failure. The x/sys calls are
// the raw system calls, which act on this thread only (unlike
// syscall.Setgroups and friends, which the Go runtime applies to every
// thread).
func setThreadIdentity(id fsIdentity) error {
	// Groups first: the other two do not need a privilege, this one does
	// (CAP_SETGID, which a non-zero file-system uid leaves in place).
	if err := unix.Setgroups(id.groups); err != nil {
		return fmt.Errorf("setgroups: %w", err)
	}
	_, _ = unix.SetfsgidRetGid(id.gid)
	_, _ = unix.SetfsuidRetUid(id.uid)
	got, err := threadIdentity()
	if err != nil {
		return err
	}
	if got.uid != id.uid || got.gid != id.gid || !sameGroups(got.groups, id.groups) {
		return fmt.Errorf("the thread has uid %d, gid %d, groups %v; wanted %d, %d, %v", got.uid, got.gid, got.groups, id.uid, id.gid, id.groups)
	}
	return nil
}

// sameGroups reports whether a and b list the same groups.
func sameGroups(a, b []int) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}
