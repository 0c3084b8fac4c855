package guest

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/openslicer/openslicer/api/cpv1"
)

// writeTree writes the directory dir to w as a copy tar (spec §3.8):
// entries relative to dir itself (no entry for dir), directories and
// regular files only, permission bits and mtimes (to the second) kept,
// what exclude matches left out along with everything under it. Symbolic
// links are not followed.
func writeTree(ctx context.Context, w io.Writer, dir string, exclude []string, buf []byte) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if p == dir {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		switch {
		case cpv1.Excluded(rel, exclude) && d.IsDir():
			return filepath.SkipDir
		case cpv1.Excluded(rel, exclude), !d.IsDir() && !d.Type().IsRegular():
			return nil
		}
		return addEntry(tw, p, rel, d, buf)
	})
	if err != nil {
		return fmt.Errorf("tar %q: %w", dir, err)
	}
	return tw.Close()
}

// addEntry writes one directory or regular file. A file is sent with the
// size it had when listed; one that shrank since is an error.
func addEntry(tw *tar.Writer, p, rel string, d fs.DirEntry, buf []byte) error {
	fi, err := d.Info()
	if err != nil {
		return err
	}
	h := &tar.Header{Name: rel, Mode: int64(fi.Mode().Perm()), ModTime: fi.ModTime().Truncate(time.Second)}
	if d.IsDir() {
		h.Typeflag, h.Name = tar.TypeDir, rel+"/"
		return tw.WriteHeader(h)
	}
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	h.Typeflag, h.Size = tar.TypeReg, fi.Size()
	if err := tw.WriteHeader(h); err != nil {
		return err
	}
	n, rerr, werr := copyBuffer(tw, io.LimitReader(f, h.Size), buf)
	switch {
	case werr != nil:
		return werr
	case rerr != nil:
		return fmt.Errorf("read %q: %w", p, rerr)
	case n < h.Size:
		return fmt.Errorf("%q shrank from %d to %d bytes while being copied", p, h.Size, n)
	}
	return nil
}
