package guest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/openslicer/openslicer/api"
)

// A tar upload lands whole or not at all. The stream is extracted, with
// the extractor's rules, into a staging directory on the same file system
// as the destination (stageName, mode 0700): inside the destination
// directory when it exists, beside it when it does not. Nothing outside
// the staging directory changes until the whole stream is in and checked.
// Then it is moved into place with renames:
//
//   - a destination that does not exist is the staging directory, renamed
//     to it (refusing to replace anything that appeared meanwhile);
//   - an existing destination is merged into, as cp -r and tar -x do: each
//     staged entry whose destination is missing is renamed there whole (a
//     directory with everything in it), a staged file replaces a file or
//     symbolic link of the same name, and a staged directory meeting a
//     real directory is merged entry by entry. A staged entry meeting
//     anything else (a file where a directory goes, a symbolic link where
//     a directory goes, a directory where a file goes) fails the upload
//     before anything is moved, as does a merged directory on another file
//     system than the staging directory (where a rename cannot go).
//
// Directory modes and mtimes are set last, on the moved tree. On any
// failure the staging directory is removed, and so are the destination's
// parents the upload created, and the directory that held them gets its
// times back (see keepTimes): nothing of it is left. Only a rename failing
// part way through a merge (the destination changed under the copy, or
// the kernel refused) can leave the entries moved until then.

// receiveTar extracts an uploaded tar stream into the directory target
// (created, with its parents, when missing), staged as described above.
func (s *Server) receiveTar(ctx context.Context, u upload, target string, own owner, body io.Reader) (copyResult, error) {
	fi, err := os.Stat(target)
	switch {
	case err == nil && !fi.IsDir():
		return copyResult{}, fmt.Errorf("%w: %q is not a directory", api.ErrInvalid, target)
	case err == nil:
		return s.mergeTar(ctx, u, target, own, body)
	case errors.Is(err, fs.ErrNotExist):
		return s.freshTar(ctx, u, target, own, body)
	}
	return copyResult{}, fsError("stat", target, err)
}

// freshTar extracts into a staging directory beside target, which does
// not exist, and renames it to target.
func (s *Server) freshTar(ctx context.Context, u upload, target string, own owner, body io.Reader) (res copyResult, err error) {
	holder := keepTimes(existingDir(target))
	created, err := mkdirAllOwned(filepath.Dir(target), own)
	defer func() {
		if err != nil {
			removeCreated(created)
			holder.restore()
		}
	}()
	if err != nil {
		return copyResult{}, err
	}
	stage, err := makeStage(filepath.Dir(target), own)
	if err != nil {
		return copyResult{}, err
	}
	defer os.RemoveAll(stage) // nothing left there once renamed
	x, n, err := s.extractStage(ctx, u, stage, own, body)
	if err != nil {
		return copyResult{}, err
	}
	// As mkdirAllOwned would have made it, now that it is complete.
	if err := os.Chmod(stage, 0o755); err != nil {
		return copyResult{}, fsError("chmod", stage, err)
	}
	if err := renameNoReplace(stage, target); err != nil {
		return copyResult{}, err
	}
	if err := finishIn(x, target, nil); err != nil {
		return copyResult{}, err
	}
	return copyResult{Path: target, Bytes: n}, nil
}

// mergeTar extracts into a staging directory inside target, an existing
// directory, then merges it into target.
func (s *Server) mergeTar(ctx context.Context, u upload, target string, own owner, body io.Reader) (copyResult, error) {
	holder := keepTimes(target)
	stage, err := makeStage(target, own)
	if err != nil {
		return copyResult{}, err
	}
	// Until something has moved, a failure leaves target as it was.
	unstage := func() {
		os.RemoveAll(stage)
		holder.restore()
	}
	x, n, err := s.extractStage(ctx, u, stage, own, body)
	if err != nil {
		unstage()
		return copyResult{}, err
	}
	root, err := os.OpenRoot(target)
	if err != nil {
		unstage()
		return copyResult{}, fsError("open directory", target, err)
	}
	defer root.Close()
	moves, kept, err := planMerge(root, filepath.Base(stage))
	if err != nil {
		unstage()
		return copyResult{}, err
	}
	defer os.RemoveAll(stage) // emptied directories once merged
	for _, m := range moves {
		if err := root.Rename(m.from, m.to); err != nil {
			return copyResult{}, fsError("move into place", path.Join(target, m.to), err)
		}
	}
	if err := x.finishDirs(root, kept); err != nil {
		return copyResult{}, err
	}
	return copyResult{Path: target, Bytes: n}, nil
}

// extractStage extracts body into the staging directory stage and
// returns the extractor (for finishDirs) and the bytes written.
func (s *Server) extractStage(ctx context.Context, u upload, stage string, own owner, body io.Reader) (*extractor, int64, error) {
	root, err := os.OpenRoot(stage)
	if err != nil {
		return nil, 0, fsError("open directory", stage, err)
	}
	defer root.Close()
	x := newExtractor(s.log, root, u, own)
	n, err := x.extract(ctx, body)
	return x, n, err
}

// finishIn runs x.finishDirs on the directory dir.
func finishIn(x *extractor, dir string, kept map[string]bool) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fsError("open directory", dir, err)
	}
	defer root.Close()
	return x.finishDirs(root, kept)
}

// dirTimes are the times of a directory an upload works in, kept to be
// put back when the upload fails: a failed upload leaves nothing behind,
// not even a newer mtime on the directory that held its staging
// directory or the parents it made. Putting them back is best effort:
// only the directory's owner (or root) may set times.
type dirTimes struct {
	path         string
	atime, mtime time.Time
	ok           bool
}

// keepTimes remembers the times of dir.
func keepTimes(dir string) dirTimes {
	fi, err := os.Stat(dir)
	if err != nil {
		return dirTimes{}
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return dirTimes{}
	}
	return dirTimes{path: dir, atime: time.Unix(st.Atim.Unix()), mtime: fi.ModTime(), ok: true}
}

// restore puts the remembered times back.
func (d dirTimes) restore() {
	if d.ok {
		_ = os.Chtimes(d.path, d.atime, d.mtime)
	}
}

// existingDir is the nearest directory at or above p that exists, where
// an upload to p starts changing things.
func existingDir(p string) string {
	for {
		if fi, err := os.Stat(p); err == nil && fi.IsDir() || p == "/" || p == "." {
			return p
		}
		p = filepath.Dir(p)
	}
}

// stagePrefix starts the name of a staging directory; it is also the
// prefix of the copy's temporary files (tempName).
const stagePrefix = ".slicer-cp-stage-"

// makeStage makes a fresh staging directory in dir, private to the
// upload's owner, and returns its path.
func makeStage(dir string, own owner) (string, error) {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	p := filepath.Join(dir, stagePrefix+hex.EncodeToString(b))
	if err := os.Mkdir(p, 0o700); err != nil {
		return "", fsError("create a staging directory in", dir, err)
	}
	if own.chown {
		if err := os.Lchown(p, own.uid, own.gid); err != nil {
			_ = os.Remove(p)
			return "", fsError("chown", p, err)
		}
	}
	return p, nil
}

// renameNoReplace renames the directory from to to, which must not
// exist: something that appeared there during the copy is a conflict, not
// something to replace. File systems without RENAME_NOREPLACE get a check
// and a plain rename.
func renameNoReplace(from, to string) error {
	err := unix.Renameat2(unix.AT_FDCWD, from, unix.AT_FDCWD, to, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		if _, serr := os.Lstat(to); serr == nil {
			err = unix.EEXIST
		} else {
			err = os.Rename(from, to)
		}
	}
	switch {
	case errors.Is(err, unix.EEXIST), errors.Is(err, unix.ENOTEMPTY):
		return fmt.Errorf("%w: %q appeared while the copy was under way", api.ErrConflict, to)
	case err != nil:
		return fsError("move into place", to, err)
	}
	return nil
}

// move is one rename of a merge, both names relative to the destination.
type move struct{ from, to string }

// planMerge works out how the staged tree in stage (a directory in root)
// merges into root: the renames to make, and the existing directories it
// merges into. Every check is made before anything moves; see the top of
// this file for the rules.
func planMerge(root *os.Root, stage string) ([]move, map[string]bool, error) {
	sfi, err := root.Lstat(stage)
	if err != nil {
		return nil, nil, fsError("stat", stage, err)
	}
	p := merger{root: root, stage: stage, dev: devOf(sfi), kept: map[string]bool{}}
	if err := p.walk(""); err != nil {
		return nil, nil, err
	}
	return p.moves, p.kept, nil
}

// merger is the state of planMerge.
type merger struct {
	root  *os.Root
	stage string
	dev   uint64 // the staging directory's file system
	moves []move
	kept  map[string]bool
}

// walk plans the staged directory rel (relative to the stage; "" is the
// stage itself) into the destination directory of the same name.
func (p *merger) walk(rel string) error {
	d, err := p.root.Open(path.Join(p.stage, rel))
	if err != nil {
		return fsError("open", path.Join(p.stage, rel), err)
	}
	entries, err := d.ReadDir(-1)
	d.Close()
	if err != nil {
		return fsError("read directory", path.Join(p.stage, rel), err)
	}
	for _, e := range entries {
		src, dst := path.Join(p.stage, rel, e.Name()), path.Join(rel, e.Name())
		fi, err := p.root.Lstat(dst)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			p.moves = append(p.moves, move{from: src, to: dst})
		case err != nil:
			return fsError("stat", dst, err)
		case e.IsDir() && fi.IsDir() && devOf(fi) != p.dev:
			return fmt.Errorf("%w: %q is on another file system than the rest of the destination; copy into it directly", api.ErrInvalid, dst)
		case e.IsDir() && fi.IsDir():
			p.kept[dst] = true
			if err := p.walk(dst); err != nil {
				return err
			}
		case e.IsDir() && fi.Mode()&fs.ModeSymlink != 0:
			return fmt.Errorf("%w: %q in the destination is a symbolic link; copies do not write through links", api.ErrInvalid, dst)
		case e.IsDir():
			return fmt.Errorf("%w: %q in the destination is not a directory", api.ErrInvalid, dst)
		case fi.IsDir():
			return fmt.Errorf("%w: %q in the destination is a directory", api.ErrInvalid, dst)
		default: // a file or link, which the staged file replaces
			p.moves = append(p.moves, move{from: src, to: dst})
		}
	}
	return nil
}

// devOf is the device of the file system holding fi.
func devOf(fi fs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Dev
	}
	return 0
}
