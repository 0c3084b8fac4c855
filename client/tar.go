package client

import (
	"archive/tar"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/api/cpv1"
)

// tarEntry is one file or directory of a tree to send, relative to the
// tree's root with forward slashes.
type tarEntry struct {
	rel   string
	path  string
	dir   bool
	mode  fs.FileMode // permission bits only
	size  int64
	mtime time.Time
}

// collectTree lists the regular files and directories under root, in walk
// order, without root itself and without what the exclude globs leave out
// (cp-v1's rules, api/cpv1: an excluded directory drops its whole
// subtree). Symlinks, devices and sockets are skipped. It also returns the
// total size of the files. A bad glob is an error of class api.ErrInvalid.
func collectTree(root string, exclude []string) ([]tarEntry, int64, error) {
	globs, err := cpv1.ParseExcludes(exclude)
	if err != nil {
		return nil, 0, err
	}
	var entries []tarEntry
	var total int64
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == root {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if cpv1.Excluded(rel, globs) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.IsDir() && !d.Type().IsRegular() {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		e := tarEntry{rel: rel, path: p, dir: d.IsDir(), mode: fi.Mode().Perm(), mtime: fi.ModTime()}
		if !e.dir {
			e.size = fi.Size()
			total += e.size
		}
		entries = append(entries, e)
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("walk %q: %w", root, err)
	}
	return entries, total, nil
}

// writeTar writes entries as an uncompressed tar: names relative to the
// tree, permission bits and mtimes (to the second) kept.
func writeTar(w io.Writer, entries []tarEntry) error {
	tw := tar.NewWriter(w)
	for _, e := range entries {
		h := &tar.Header{
			Name:    e.rel,
			Mode:    int64(e.mode),
			ModTime: e.mtime.Truncate(time.Second),
		}
		if e.dir {
			h.Typeflag, h.Name = tar.TypeDir, e.rel+"/"
		} else {
			h.Typeflag, h.Size = tar.TypeReg, e.size
		}
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("write tar header %q: %w", e.rel, err)
		}
		if !e.dir {
			if err := copyFileInto(tw, e.path, e.size); err != nil {
				return err
			}
		}
	}
	return tw.Close()
}

// copyFileInto writes exactly size bytes of the file at p; a file that
// shrank since it was listed is an error.
func copyFileInto(w io.Writer, p string, size int64) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := io.CopyN(w, f, size); err != nil {
		return fmt.Errorf("copy %q into tar: %w", p, err)
	}
	return nil
}

// extractTar unpacks a tar stream into the directory dir, which must
// exist. Only regular files and directories are written; names and
// exclude globs follow cp-v1's rules (api/cpv1: no empty names, NUL bytes,
// absolute names or ".." components, which refuse the copy), and no
// symlink is followed out (os.Root enforces it). Files are written to a
// temporary name and renamed into place. Modes and mtimes are kept; uid
// and gid, when not negative, are applied to everything written.
func extractTar(r io.Reader, dir string, exclude []string, uid, gid int) error {
	globs, err := cpv1.ParseExcludes(exclude)
	if err != nil {
		return err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("open destination %q: %w", dir, err)
	}
	defer root.Close()
	type dirTimes struct {
		name  string
		mode  fs.FileMode
		mtime time.Time
	}
	var dirs []dirTimes
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read tar: %w", err)
		}
		rel, err := cpv1.EntryName(h.Name)
		if err != nil {
			return err
		}
		if rel == "." || cpv1.Excluded(rel, globs) {
			continue
		}
		name, err := localName(rel)
		if err != nil {
			return err
		}
		mode := fs.FileMode(h.Mode).Perm()
		switch h.Typeflag {
		case tar.TypeDir:
			if err := root.MkdirAll(name, 0o700); err != nil {
				return fmt.Errorf("create directory %q: %w", name, err)
			}
			dirs = append(dirs, dirTimes{name, mode, h.ModTime})
		case tar.TypeReg:
			if err := extractFile(root, name, tr, mode, h.ModTime); err != nil {
				return err
			}
		default:
			continue // links, devices: not part of the copy format
		}
		if uid >= 0 || gid >= 0 {
			if err := root.Lchown(name, uid, gid); err != nil {
				return fmt.Errorf("chown %q: %w", name, err)
			}
		}
	}
	for _, d := range slices.Backward(dirs) {
		if err := root.Chmod(d.name, d.mode); err != nil {
			return fmt.Errorf("chmod %q: %w", d.name, err)
		}
		if err := root.Chtimes(d.name, d.mtime, d.mtime); err != nil {
			return fmt.Errorf("set times of %q: %w", d.name, err)
		}
	}
	return nil
}

// localName is an entry name cpv1.EntryName accepted, with the platform's
// separators. It must also be local on this platform: filepath.IsLocal
// refuses, on Windows, reserved names such as NUL.
func localName(rel string) (string, error) {
	name := filepath.FromSlash(rel)
	if !filepath.IsLocal(name) {
		return "", fmt.Errorf("%w: tar entry %q is not a local name here", api.ErrInvalid, rel)
	}
	return name, nil
}

// extractFile writes one file through a temporary name in its directory.
func extractFile(root *os.Root, name string, r io.Reader, mode fs.FileMode, mtime time.Time) error {
	if d := filepath.Dir(name); d != "." {
		if err := root.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("create directory %q: %w", d, err)
		}
	}
	tmp := filepath.Join(filepath.Dir(name), tempName())
	f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create %q: %w", name, err)
	}
	_, err = io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = root.Chmod(tmp, mode)
	}
	if err == nil {
		err = root.Chtimes(tmp, mtime, mtime)
	}
	if err == nil {
		err = root.Rename(tmp, name)
	}
	if err != nil {
		_ = root.Remove(tmp)
		return fmt.Errorf("write %q: %w", name, err)
	}
	return nil
}

// tempName returns a fresh hidden file name for a write in progress.
func tempName() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return ".slicer-cp-" + hex.EncodeToString(b)
}
