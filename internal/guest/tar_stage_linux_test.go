package guest

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/openslicer/openslicer/api"
)

// contentSnapshot describes dir and everything under it, byte for byte:
// for each path its type and mode, owner, size, mtime, and its content's
// digest or its link's target.
func contentSnapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		desc := fmt.Sprintf("%v %d:%d %d %v", fi.Mode(), st.Uid, st.Gid, fi.Size(), fi.ModTime().UnixNano())
		switch {
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			desc += fmt.Sprintf(" %x", sha256.Sum256(b))
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			desc += " -> " + target
		}
		out[p] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// stageTestTree makes a destination with content for merges to meet: a
// file, a directory with a file, and a symbolic link out of it.
func stageTestTree(t *testing.T) (dest, outside string) {
	t.Helper()
	base := t.TempDir()
	dest, outside = filepath.Join(base, "dest"), filepath.Join(base, "outside")
	must(t, os.MkdirAll(filepath.Join(dest, "sub"), 0o755))
	must(t, os.Mkdir(outside, 0o755))
	must(t, os.WriteFile(filepath.Join(dest, "keep"), []byte("old keep"), 0o640))
	must(t, os.WriteFile(filepath.Join(dest, "sub", "a"), []byte("old a"), 0o644))
	must(t, os.WriteFile(filepath.Join(outside, "sentinel"), []byte("keep"), 0o644))
	must(t, os.Symlink(outside, filepath.Join(dest, "link")))
	old := time.Date(2020, 5, 6, 7, 8, 9, 0, time.UTC)
	for _, p := range []string{"keep", "sub/a", "sub", "."} {
		must(t, os.Chtimes(filepath.Join(dest, p), old, old))
	}
	return dest, outside
}

// TestCopyRejectedTarLeavesNothing sends tar streams that start well and
// then fail, into an existing destination (merged into) and into a
// missing one with missing parents: neither the destination nor anything
// around it may change, byte for byte.
func TestCopyRejectedTarLeavesNothing(t *testing.T) {
	h := newHarness(t)
	ok := tarFile{name: "ok1", body: "fine"}
	tests := []struct {
		name      string
		entries   func(outside string) []tarFile
		size      int64 // X-Slicer-Unpacked-Size; 0: 1 MiB
		mergeOnly bool  // the failure needs what the existing destination holds
	}{
		{name: "ok then ../x", entries: func(string) []tarFile { return []tarFile{ok, {name: "../x", body: "x"}} }},
		{name: "ok then an absolute name", entries: func(o string) []tarFile { return []tarFile{ok, {name: filepath.Join(o, "abs"), body: "x"}} }},
		{name: "a replacement, a new directory, then ../x", entries: func(string) []tarFile {
			return []tarFile{{name: "keep", body: "new keep"}, {name: "newdir/", typ: tar.TypeDir, mode: 0o700}, {name: "newdir/f", body: "f"}, {name: "sub/b", body: "b"}, {name: "../x", body: "x"}}
		}},
		{name: "ok then past the declared size", size: 6, entries: func(string) []tarFile {
			return []tarFile{ok, {name: "big", body: "0123456789"}}
		}},
		{name: "ok then a truncated entry", entries: func(string) []tarFile { return []tarFile{ok, {name: "short", body: "abc", size: 100}} }},
		{name: "ok then through a symbolic link in the destination", mergeOnly: true, entries: func(string) []tarFile {
			return []tarFile{ok, {name: "link/pwned", body: "x"}}
		}},
		{name: "ok then a directory over a file", mergeOnly: true, entries: func(string) []tarFile {
			return []tarFile{ok, {name: "keep/x", body: "x"}}
		}},
		{name: "ok then a file over a directory", mergeOnly: true, entries: func(string) []tarFile {
			return []tarFile{ok, {name: "sub", body: "x"}}
		}},
	}
	for _, tt := range tests {
		for _, shape := range []string{"merge", "fresh"} {
			if tt.mergeOnly && shape == "fresh" {
				continue
			}
			t.Run(tt.name+"/"+shape, func(t *testing.T) {
				dest, outside := stageTestTree(t)
				base := filepath.Dir(dest)
				target, q := dest, url.Values{"copy_contents": {"true"}}
				if shape == "fresh" {
					target = filepath.Join(dest, "new", "deeper")
				}
				before := contentSnapshot(t, base)
				size := tt.size
				if size == 0 {
					size = 1 << 20
				}
				q.Set("path", target)
				q.Set("mode", api.CopyModeTar)
				q.Set("copy_semantics", api.CopySemanticsV1)
				q.Set("source_type", api.CopySourceDirectory)
				r := h.cp(http.MethodPost, asMe(q), tarHeader(size), bytes.NewReader(makeTar(t, tt.entries(outside)...)))
				r.wantStatus(t, http.StatusBadRequest)
				if diff := cmp.Diff(before, contentSnapshot(t, base)); diff != "" {
					t.Errorf("a refused upload changed the tree (-before +after):\n%s", diff)
				}
				if got := cpTemps(t, base); len(got) > 0 {
					t.Errorf("staging or temporary files left: %q", got)
				}
			})
		}
	}
}

// TestCopyTarMerge checks the merge into an existing directory: new
// entries are added, files replaced, directories merged, what the tar
// does not name kept, and nothing of the staging left.
func TestCopyTarMerge(t *testing.T) {
	h := newHarness(t)
	dest, outside := stageTestTree(t)
	mtime := time.Date(2022, 1, 2, 3, 4, 5, 0, time.UTC)
	body := makeTar(t,
		tarFile{name: "keep", body: "new keep", mode: 0o600, mtime: mtime},
		tarFile{name: "sub/", typ: tar.TypeDir, mode: 0o750, mtime: mtime},
		tarFile{name: "sub/b", body: "b", mtime: mtime},
		tarFile{name: "ro/", typ: tar.TypeDir, mode: 0o555, mtime: mtime},
		tarFile{name: "ro/deep/", typ: tar.TypeDir, mode: 0o755, mtime: mtime},
		tarFile{name: "ro/deep/f", body: "f", mtime: mtime},
	)
	q := asMe(url.Values{"path": {dest}, "mode": {api.CopyModeTar}, "copy_semantics": {"cp-v1"}, "copy_contents": {"true"}})
	h.cp(http.MethodPost, q, tarHeader(11), bytes.NewReader(body)).wantStatus(t, http.StatusOK)
	t.Cleanup(func() { os.Chmod(filepath.Join(dest, "ro"), 0o755) })

	for p, want := range map[string]string{"keep": "new keep", "sub/a": "old a", "sub/b": "b", "ro/deep/f": "f", "outside/sentinel": "keep"} {
		full := filepath.Join(dest, p)
		if p == "outside/sentinel" {
			full = filepath.Join(outside, "sentinel")
		}
		if b, err := os.ReadFile(full); err != nil || string(b) != want {
			t.Errorf("%s = %q, %v; want %q", p, b, err, want)
		}
	}
	for p, want := range map[string]fs.FileMode{"keep": 0o600, "sub": 0o750 | fs.ModeDir, "ro": 0o555 | fs.ModeDir} {
		fi, err := os.Lstat(filepath.Join(dest, p))
		if err != nil || fi.Mode() != want || !fi.ModTime().Equal(mtime) {
			t.Errorf("%s: %v, %v; want mode %v and mtime %v", p, fi.Mode(), err, want, mtime)
		}
	}
	if fi, err := os.Lstat(filepath.Join(dest, "link")); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		t.Errorf("the link the tar did not name = %v, %v; want it kept", fi, err)
	}
	if got := cpTemps(t, dest); len(got) > 0 {
		t.Errorf("staging or temporary files left: %q", got)
	}
}

// TestCopyTarFresh checks an upload to a missing destination: it is made
// whole, with its parents, and nothing of the staging is left beside it.
func TestCopyTarFresh(t *testing.T) {
	h := newHarness(t)
	base := t.TempDir()
	target := filepath.Join(base, "a", "b")
	body := makeTar(t, tarFile{name: "d/", typ: tar.TypeDir, mode: 0o700}, tarFile{name: "d/f", body: "f"}, tarFile{name: "g", body: "g"})
	q := asMe(url.Values{"path": {target}, "mode": {api.CopyModeTar}, "copy_semantics": {"cp-v1"}})
	h.cp(http.MethodPost, q, tarHeader(2), bytes.NewReader(body)).wantStatus(t, http.StatusOK)
	for p, want := range map[string]string{"d/f": "f", "g": "g"} {
		if b, err := os.ReadFile(filepath.Join(target, p)); err != nil || string(b) != want {
			t.Errorf("%s = %q, %v; want %q", p, b, err, want)
		}
	}
	if fi, err := os.Stat(target); err != nil || fi.Mode() != 0o755|fs.ModeDir {
		t.Errorf("destination = %v, %v; want a 0755 directory", fi, err)
	}
	if got := cpTemps(t, base); len(got) > 0 {
		t.Errorf("staging or temporary files left: %q", got)
	}
}

// TestCopyFileLeavesNoParents checks that a failed single-file upload
// removes the parent directories it created.
func TestCopyFileLeavesNoParents(t *testing.T) {
	h := newHarness(t)
	base := t.TempDir()
	before := contentSnapshot(t, base)
	dst := filepath.Join(base, "new", "parents", "f")
	me, myGroup := uint32(os.Getuid()), uint32(os.Getgid())
	u := upload{rawPath: dst, v1: true, uid: &me, gid: &myGroup, size: -1}
	if _, err := h.srv.receive(context.Background(), u, &failingReader{data: []byte("some bytes")}); err == nil {
		t.Fatal("an upload whose body broke off succeeded")
	}
	if diff := cmp.Diff(before, contentSnapshot(t, base)); diff != "" {
		t.Errorf("a failed upload changed the tree (-before +after):\n%s", diff)
	}
}

// failingReader returns data, then an error.
type failingReader struct{ data []byte }

func (f *failingReader) Read(p []byte) (int, error) {
	if len(f.data) == 0 {
		return 0, errors.New("the client broke off")
	}
	n := copy(p, f.data)
	f.data = f.data[n:]
	return n, nil
}

func TestRenameNoReplace(t *testing.T) {
	dir := t.TempDir()
	from, to := filepath.Join(dir, "from"), filepath.Join(dir, "to")
	must(t, os.Mkdir(from, 0o755))
	must(t, os.Mkdir(to, 0o755))
	if err := renameNoReplace(from, to); !errors.Is(err, api.ErrConflict) {
		t.Errorf("rename over an existing (empty) directory: %v, want a conflict", err)
	}
	must(t, os.Remove(to))
	if err := renameNoReplace(from, to); err != nil {
		t.Errorf("rename to a free name: %v", err)
	}
}

// TestCopyTarMergeAcrossFileSystems checks that a merge into a directory
// on another file system is refused before anything moves.
func TestCopyTarMergeAcrossFileSystems(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	h := newHarness(t)
	dest, _ := stageTestTree(t)
	mnt := filepath.Join(dest, "mnt")
	must(t, os.Mkdir(mnt, 0o755))
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=1m"); err != nil {
		t.Skipf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(mnt, syscall.MNT_DETACH) })
	before := contentSnapshot(t, filepath.Dir(dest))
	q := asMe(url.Values{"path": {dest}, "mode": {api.CopyModeTar}, "copy_semantics": {"cp-v1"}, "copy_contents": {"true"}})
	r := h.cp(http.MethodPost, q, tarHeader(2), bytes.NewReader(makeTar(t, tarFile{name: "ok1", body: "1"}, tarFile{name: "mnt/x", body: "x"})))
	r.wantStatus(t, http.StatusBadRequest)
	if diff := cmp.Diff(before, contentSnapshot(t, filepath.Dir(dest))); diff != "" {
		t.Errorf("a refused merge changed the tree (-before +after):\n%s", diff)
	}
}
