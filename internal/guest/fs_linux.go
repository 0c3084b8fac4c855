package guest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/agent"
)

// routeFS registers the filesystem routes.
func (s *Server) routeFS(mux *http.ServeMux) {
	mux.HandleFunc("GET "+agent.PathFSReadDir, s.fsReadDir)
	mux.HandleFunc("GET "+agent.PathFSStat, s.fsStat)
	mux.HandleFunc("POST "+agent.PathFSMkdir, s.fsMkdir)
	mux.HandleFunc("DELETE "+agent.PathFSRemove, s.fsRemove)
	mux.HandleFunc("GET "+agent.PathFSWatch, s.fsWatch)
}

// fsAs runs one file-system request as the user it is for (query uid and
// gid, as copies take them: none is the default user, 0 is root; see
// actor.do): op gets the actor, and resolves paths against its home
// ("~"). An error of op is the answer; op writes any other answer itself.
func (s *Server) fsAs(w http.ResponseWriter, r *http.Request, op func(act actor) error) {
	uid, gid, err := queryOwner(r.URL.Query())
	if err != nil {
		agent.WriteError(w, err)
		return
	}
	act, err := s.actor(uid, gid)
	if err != nil {
		agent.WriteError(w, err)
		return
	}
	if err := act.do(func() error { return op(act) }); err != nil {
		agent.WriteError(w, err)
	}
}

// fsReadDir lists a directory, sorted by name, each entry described as
// lstat sees it. An entry that disappears while being listed is left out.
func (s *Server) fsReadDir(w http.ResponseWriter, r *http.Request) {
	s.fsAs(w, r, func(act actor) error {
		p, err := guestPath("path", r.URL.Query().Get("path"), act.Home)
		if err != nil {
			return err
		}
		fi, err := os.Stat(p)
		if err != nil {
			return fsOpError("readdir", p, err)
		}
		if !fi.IsDir() {
			return fmt.Errorf("%w: readdir %s: not a directory", api.ErrInvalid, p)
		}
		entries, err := os.ReadDir(p) // sorted by name
		if err != nil {
			return fsOpError("readdir", p, err)
		}
		infos := make([]api.FSInfo, 0, len(entries))
		for _, e := range entries {
			fi, err := e.Info()
			if err != nil {
				continue
			}
			infos = append(infos, fsInfo(e.Name(), fi))
		}
		agent.WriteJSON(w, http.StatusOK, infos)
		return nil
	})
}

// fsStat describes one path as lstat sees it; Name is its base name.
func (s *Server) fsStat(w http.ResponseWriter, r *http.Request) {
	s.fsAs(w, r, func(act actor) error {
		p, err := guestPath("path", r.URL.Query().Get("path"), act.Home)
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return fsOpError("stat", p, err)
		}
		agent.WriteJSON(w, http.StatusOK, fsInfo(filepath.Base(p), fi))
		return nil
	})
}

// fsMkdir creates a directory, and with recursive its missing parents;
// what it creates belongs to the user it acts as.
func (s *Server) fsMkdir(w http.ResponseWriter, r *http.Request) {
	var req api.FSMkdirRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		agent.WriteError(w, fmt.Errorf("%w: decode mkdir request: %v", api.ErrInvalid, err))
		return
	}
	mode, err := parseDirMode(req.Mode)
	if err != nil {
		agent.WriteError(w, err)
		return
	}
	s.fsAs(w, r, func(act actor) error {
		p, err := guestPath("path", req.Path, act.Home)
		if err != nil {
			return err
		}
		todo, err := dirsToCreate(p, req.Recursive)
		if err != nil {
			return err
		}
		for i, d := range todo {
			perm := uint32(defaultDirMode)
			if i == len(todo)-1 {
				perm = mode
			}
			if err := makeDir(d, perm, act.owner()); err != nil {
				return err
			}
		}
		agent.WriteJSON(w, http.StatusOK, fsPathResponse{Path: p})
		return nil
	})
}

// dirsToCreate returns the directories mkdir must create for p, outermost
// first: p, and with recursive its missing parents. An existing directory
// p is nothing to do with recursive (as mkdir -p) and a conflict without;
// a missing parent without recursive is not found, naming the parent. A
// path through a file (ENOTDIR) is followed up to the file, so the error
// names it.
func dirsToCreate(p string, recursive bool) ([]string, error) {
	var todo []string
	for dir := p; ; dir = filepath.Dir(dir) {
		fi, err := os.Stat(dir)
		switch {
		case err == nil && !fi.IsDir() && dir == p:
			return nil, fmt.Errorf("%w: mkdir %s: exists and is not a directory", api.ErrAlreadyExists, p)
		case err == nil && !fi.IsDir():
			return nil, fmt.Errorf("%w: mkdir %s: parent %s is not a directory", api.ErrInvalid, p, dir)
		case err == nil && dir == p && !recursive:
			return nil, fmt.Errorf("%w: mkdir %s: directory exists", api.ErrAlreadyExists, p)
		case err == nil:
			slices.Reverse(todo)
			return todo, nil
		case !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, unix.ENOTDIR):
			return nil, fsOpError("mkdir", dir, err)
		case dir != p && !recursive:
			return nil, fmt.Errorf("%w: mkdir %s: parent %s does not exist (use recursive)", api.ErrNotFound, p, dir)
		}
		todo = append(todo, dir) // "/" exists, so the loop ends
	}
}

// makeDir creates one directory with exactly perm (no umask), given to
// own when it needs a chown. Someone else creating it first is fine.
func makeDir(dir string, perm uint32, own owner) error {
	if err := unix.Mkdir(dir, perm); err != nil {
		if errors.Is(err, unix.EEXIST) {
			if fi, serr := os.Stat(dir); serr == nil && fi.IsDir() {
				return nil
			}
		}
		return fsOpError("mkdir", dir, err)
	}
	if own.chown {
		if err := unix.Lchown(dir, own.uid, own.gid); err != nil {
			return fsOpError("chown", dir, err)
		}
	}
	// After chown, which may clear the setgid bit, and without the umask.
	if err := unix.Chmod(dir, perm); err != nil {
		return fsOpError("chmod", dir, err)
	}
	return nil
}

// fsRemove deletes a path: a file, a symlink (not its target), an empty
// directory, or with recursive=true a directory and everything under it.
// "/" is never removed.
func (s *Server) fsRemove(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	recursive, err := parseOptionalBool("recursive", q.Get("recursive"))
	if err != nil {
		agent.WriteError(w, err)
		return
	}
	s.fsAs(w, r, func(act actor) error {
		p, err := guestPath("path", q.Get("path"), act.Home)
		if err != nil {
			return err
		}
		if p == "/" {
			return fmt.Errorf("%w: refusing to remove /", api.ErrInvalid)
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return fsOpError("remove", p, err)
		}
		if recursive && fi.IsDir() {
			err = os.RemoveAll(p)
		} else {
			err = os.Remove(p)
		}
		if err != nil {
			return fsOpError("remove", p, err)
		}
		agent.WriteJSON(w, http.StatusOK, fsPathResponse{Path: p})
		return nil
	})
}

// fsOpError gives err, from a filesystem operation op on path, its api
// class: fsClass's, except that exists and not empty are conflicts. The
// message reads "class: op path: reason".
func fsOpError(op, path string, err error) error {
	reason := err
	var pe *fs.PathError
	if errors.As(err, &pe) {
		reason = pe.Err
	}
	class := fsClass(err)
	switch {
	case errors.Is(err, unix.ENOTEMPTY):
		return fmt.Errorf("%w: %s %s: directory not empty (use recursive=true)", api.ErrConflict, op, path)
	case errors.Is(err, fs.ErrExist):
		class = api.ErrAlreadyExists
	case class == nil:
		return fmt.Errorf("%s %s: %w", op, path, reason)
	}
	return fmt.Errorf("%w: %s %s: %v", class, op, path, reason)
}

// fsClass is the api class of a file system error, or nil for none: a full
// disk is 507, a missing file 404, a refusal 403, the wrong kind of file
// in a path 400.
func fsClass(err error) error {
	switch {
	case errors.Is(err, unix.ENOSPC), errors.Is(err, unix.EDQUOT), errors.Is(err, unix.EFBIG):
		return api.ErrInsufficientStorage
	case errors.Is(err, fs.ErrNotExist):
		return api.ErrNotFound
	case errors.Is(err, fs.ErrPermission), errors.Is(err, unix.EROFS):
		return api.ErrForbidden
	case errors.Is(err, unix.ENOTDIR), errors.Is(err, unix.EISDIR), errors.Is(err, unix.ELOOP), errors.Is(err, unix.ENAMETOOLONG):
		return api.ErrInvalid
	}
	return nil
}
