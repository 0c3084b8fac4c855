package guest

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"slices"
	"time"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/api/cpv1"
)

// extractor unpacks one tar stream into a directory, which it reaches only
// through root, so the kernel keeps every write inside it.
//
// What it writes: directories and regular files, nothing else (links,
// devices and fifos are skipped: the copy format does not send them).
// Entry names may not be absolute nor contain "..", and no symbolic link
// already in the directory is followed, so nothing outside it is created
// or changed. Files are written through temporary names and renamed into
// place; modes (permission bits) and mtimes are kept, directories' by
// finishDirs once their contents are in (and, for a staged upload, moved
// into place). Everything written is given to the upload's owner.
type extractor struct {
	log     *slog.Logger
	root    *os.Root
	own     owner
	perm    *fs.FileMode // for regular files, instead of the entries' modes
	exclude []string
	budget  int64           // bytes of file content still allowed; < 0 unlimited
	known   map[string]bool // directories made or checked to be real directories
	dirs    []dirEntry      // directory entries, to finish once all is written
	buf     []byte
}

// dirEntry is a directory entry's metadata, applied at the end.
type dirEntry struct {
	name  string
	mode  fs.FileMode
	mtime time.Time
}

// newExtractor returns an extractor into root for upload u.
func newExtractor(log *slog.Logger, root *os.Root, u upload, own owner) *extractor {
	return &extractor{
		log:     log,
		root:    root,
		own:     own,
		perm:    u.perm,
		exclude: u.exclude,
		budget:  u.size,
		known:   map[string]bool{".": true},
		buf:     make([]byte, copyBufSize),
	}
}

// extract reads the stream to its end and returns the bytes of file
// content written. Directory modes and mtimes are left for finishDirs.
func (x *extractor) extract(ctx context.Context, r io.Reader) (int64, error) {
	tr := tar.NewReader(r)
	var total int64
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return total, fmt.Errorf("%w: read tar: %v", api.ErrInvalid, err)
		}
		n, err := x.entry(h, tr)
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// entry extracts one tar entry.
func (x *extractor) entry(h *tar.Header, r io.Reader) (int64, error) {
	name, err := cpv1.EntryName(h.Name)
	if err != nil {
		return 0, err
	}
	switch {
	case name == ".":
		return 0, nil // the destination itself: left as it is
	case cpv1.Excluded(name, x.exclude):
		x.log.Debug("copy: excluded", "entry", name)
		return 0, nil
	}
	switch h.Typeflag {
	case tar.TypeDir:
		return 0, x.dir(name, h)
	case tar.TypeReg:
		return x.file(name, h, r)
	}
	x.log.Debug("copy: skipped tar entry that is not a file or directory", "entry", name, "type", string(h.Typeflag))
	return 0, nil
}

// dir makes a directory entry (or checks an existing one) and gives it to
// the owner; its mode and mtime wait for finishDirs.
func (x *extractor) dir(name string, h *tar.Header) error {
	if err := x.ensureDir(name); err != nil {
		return err
	}
	if x.own.chown {
		if err := x.root.Lchown(name, x.own.uid, x.own.gid); err != nil {
			return fsError("chown", name, err)
		}
	}
	x.dirs = append(x.dirs, dirEntry{name: name, mode: fs.FileMode(h.Mode).Perm(), mtime: h.ModTime})
	return nil
}

// file writes a regular file entry, within the declared size.
func (x *extractor) file(name string, h *tar.Header, r io.Reader) (int64, error) {
	if x.budget >= 0 {
		if h.Size > x.budget {
			return 0, fmt.Errorf("%w: tar entry %q (%d bytes) goes past the %d bytes declared in %s",
				api.ErrInvalid, name, h.Size, x.budget, api.HeaderUnpackedSize)
		}
		x.budget -= h.Size
	}
	if err := x.ensureDir(path.Dir(name)); err != nil {
		return 0, err
	}
	m := fileMeta{mode: entryMode(x.perm, h.Mode), mtime: h.ModTime, owner: x.own}
	return writeFile(x.root, name, r, m, x.buf)
}

// ensureDir makes sure name and every directory above it are real
// directories, making the missing ones (mode 0755, given to the owner). A
// symbolic link on the way is refused rather than followed, so that no
// write can land outside the destination.
func (x *extractor) ensureDir(name string) error {
	if x.known[name] {
		return nil
	}
	if parent := path.Dir(name); parent != name {
		if err := x.ensureDir(parent); err != nil {
			return err
		}
	}
	fi, err := x.root.Lstat(name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := x.mkdir(name); err != nil {
			return err
		}
	case err != nil:
		return fsError("stat", name, err)
	case fi.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("%w: %q in the destination is a symbolic link; copies do not write through links", api.ErrInvalid, name)
	case !fi.IsDir():
		return fmt.Errorf("%w: %q in the destination is not a directory", api.ErrInvalid, name)
	}
	x.known[name] = true
	return nil
}

// mkdir makes one directory and gives it to the owner.
func (x *extractor) mkdir(name string) error {
	if err := x.root.Mkdir(name, 0o755); err != nil {
		return fsError("create directory", name, err)
	}
	if x.own.chown {
		if err := x.root.Lchown(name, x.own.uid, x.own.gid); err != nil {
			return fsError("chown", name, err)
		}
	}
	return nil
}

// finishDirs sets the directory entries' modes and mtimes in root (the
// directory the entries were moved to), deepest last seen first, now that
// nothing more is written into them. A directory that existed before the
// upload (kept says which) may belong to someone else: failing to set its
// mode or times is logged, not an error, as cp -p warns and goes on; the
// upload has landed by then.
func (x *extractor) finishDirs(root *os.Root, kept map[string]bool) error {
	for _, d := range slices.Backward(x.dirs) {
		err := root.Chmod(d.name, d.mode)
		if err == nil {
			err = root.Chtimes(d.name, d.mtime, d.mtime)
		}
		switch {
		case err != nil && kept[d.name]:
			x.log.Info("copy: left the mode and times of an existing directory as they were", "dir", d.name, "err", err)
		case err != nil:
			return fsError("set the mode and times of", d.name, err)
		}
	}
	return nil
}
