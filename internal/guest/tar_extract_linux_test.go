package guest

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/openslicer/openslicer/api"
)

// treeSnapshot lists everything under dir: path → type, mode, size, mtime.
func treeSnapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		out[p] = fmt.Sprintf("%v %v %d", fi.Mode(), fi.ModTime(), fi.Size())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestCopyHostileTar sends tar streams that try to write outside the
// destination, and checks that nothing outside it is created or changed.
func TestCopyHostileTar(t *testing.T) {
	h := newHarness(t)
	tests := []struct {
		name    string
		entries func(outside string) []tarFile
		setup   func(t *testing.T, dest, outside string)
		size    int64 // X-Slicer-Unpacked-Size; 0: 1 MiB
		status  int
		check   func(t *testing.T, dest string)
	}{
		{
			name:    "dot-dot escape",
			entries: func(string) []tarFile { return []tarFile{{name: "../evil", body: "x"}} },
			status:  http.StatusBadRequest,
		},
		{
			name:    "dot-dot inside a name",
			entries: func(string) []tarFile { return []tarFile{{name: "a/../../evil", body: "x"}} },
			status:  http.StatusBadRequest,
		},
		{
			name:    "dot-dot directory",
			entries: func(string) []tarFile { return []tarFile{{name: "../evil/", typ: tar.TypeDir, mode: 0o777}} },
			status:  http.StatusBadRequest,
		},
		{
			name:    "absolute name",
			entries: func(outside string) []tarFile { return []tarFile{{name: filepath.Join(outside, "evil"), body: "x"}} },
			status:  http.StatusBadRequest,
		},
		{
			name: "symlink entry then a file through it",
			entries: func(outside string) []tarFile {
				return []tarFile{
					{name: "esc", typ: tar.TypeSymlink, link: outside},
					{name: "rel", typ: tar.TypeSymlink, link: "../" + filepath.Base(outside)},
					{name: "esc/pwned", body: "x"},
					{name: "rel/pwned", body: "x"},
				}
			},
			status: http.StatusOK,
			check: func(t *testing.T, dest string) {
				for _, d := range []string{"esc", "rel"} {
					if fi, err := os.Lstat(filepath.Join(dest, d)); err != nil || !fi.IsDir() {
						t.Errorf("%s = %v, %v; want a plain directory made inside the destination", d, fi, err)
					}
				}
			},
		},
		{
			name: "hard link to a file outside",
			entries: func(outside string) []tarFile {
				return []tarFile{{name: "hl", typ: tar.TypeLink, link: filepath.Join(outside, "sentinel")}}
			},
			status: http.StatusOK,
			check: func(t *testing.T, dest string) {
				if _, err := os.Lstat(filepath.Join(dest, "hl")); err == nil {
					t.Errorf("a hard link entry was extracted")
				}
			},
		},
		{
			name: "device and fifo entries",
			entries: func(string) []tarFile {
				return []tarFile{{name: "null", typ: tar.TypeChar}, {name: "pipe", typ: tar.TypeFifo}}
			},
			status: http.StatusOK,
			check: func(t *testing.T, dest string) {
				if ents, _ := os.ReadDir(dest); len(ents) != 0 {
					t.Errorf("destination has %v, want nothing", ents)
				}
			},
		},
		{
			name: "existing symlink to outside, file through it",
			setup: func(t *testing.T, dest, outside string) {
				os.Symlink(outside, filepath.Join(dest, "link"))
			},
			entries: func(string) []tarFile { return []tarFile{{name: "link/pwned", body: "x"}} },
			status:  http.StatusBadRequest,
		},
		{
			name: "existing symlink to outside, directory entry",
			setup: func(t *testing.T, dest, outside string) {
				os.Symlink(outside, filepath.Join(dest, "link"))
			},
			entries: func(string) []tarFile { return []tarFile{{name: "link/", typ: tar.TypeDir, mode: 0o777}} },
			status:  http.StatusBadRequest,
		},
		{
			name: "existing symlink to a file outside, replaced by a file entry",
			setup: func(t *testing.T, dest, outside string) {
				os.Symlink(filepath.Join(outside, "sentinel"), filepath.Join(dest, "link"))
			},
			entries: func(string) []tarFile { return []tarFile{{name: "link", body: "new"}} },
			status:  http.StatusOK,
			check: func(t *testing.T, dest string) {
				fi, err := os.Lstat(filepath.Join(dest, "link"))
				if err != nil || !fi.Mode().IsRegular() {
					t.Errorf("link = %v, %v; want the symlink replaced by a regular file", fi, err)
				}
			},
		},
		{
			name:    "names with dots stay inside",
			entries: func(string) []tarFile { return []tarFile{{name: "a..b", body: "1"}, {name: "..c/d..", body: "2"}} },
			status:  http.StatusOK,
			check: func(t *testing.T, dest string) {
				for _, p := range []string{"a..b", "..c/d.."} {
					if _, err := os.Stat(filepath.Join(dest, p)); err != nil {
						t.Errorf("%s: %v", p, err)
					}
				}
			},
		},
		{
			name:    "entry larger than the declared unpacked size",
			entries: func(string) []tarFile { return []tarFile{{name: "huge", body: "abc", size: 1 << 40}} },
			size:    10,
			status:  http.StatusBadRequest,
			check: func(t *testing.T, dest string) {
				if ents, _ := os.ReadDir(dest); len(ents) != 0 {
					t.Errorf("destination has %v, want nothing", ents)
				}
			},
		},
		{
			name: "entries adding up past the declared size",
			entries: func(string) []tarFile {
				return []tarFile{{name: "a", body: strings.Repeat("a", 6)}, {name: "b", body: strings.Repeat("b", 6)}}
			},
			size:   10,
			status: http.StatusBadRequest,
			check: func(t *testing.T, dest string) {
				if _, err := os.Stat(filepath.Join(dest, "b")); err == nil {
					t.Errorf("b was written past the declared size")
				}
			},
		},
		{
			name:    "truncated stream",
			entries: func(string) []tarFile { return []tarFile{{name: "short", body: "abc", size: 100}} },
			status:  http.StatusBadRequest,
			check: func(t *testing.T, dest string) {
				if got := cpTemps(t, dest); len(got) > 0 {
					t.Errorf("temporary files left: %q", got)
				}
				if _, err := os.Stat(filepath.Join(dest, "short")); err == nil {
					t.Errorf("a truncated file was put in place")
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := t.TempDir()
			dest, outside := filepath.Join(base, "dest"), filepath.Join(base, "outside")
			for _, d := range []string{dest, outside} {
				if err := os.Mkdir(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.WriteFile(filepath.Join(outside, "sentinel"), []byte("keep"), 0o644); err != nil {
				t.Fatal(err)
			}
			if tt.setup != nil {
				tt.setup(t, dest, outside)
			}
			before := treeSnapshot(t, outside)
			size := tt.size
			if size == 0 {
				size = 1 << 20
			}
			q := asMe(url.Values{"path": {dest}, "mode": {api.CopyModeTar}, "copy_semantics": {"cp-v1"},
				"copy_contents": {"true"}, "source_type": {"directory"}})
			r := h.cp(http.MethodPost, q, tarHeader(size), bytes.NewReader(makeTar(t, tt.entries(outside)...)))
			r.wantStatus(t, tt.status)
			if diff := cmp.Diff(before, treeSnapshot(t, outside)); diff != "" {
				t.Errorf("outside the destination changed (-before +after):\n%s", diff)
			}
			if _, err := os.Lstat(filepath.Join(base, "evil")); err == nil {
				t.Errorf("%s/evil was created", base)
			}
			if tt.check != nil {
				tt.check(t, dest)
			}
		})
	}
}

// TestCopyDirectoryTimesAfterContents checks that a directory's mtime is
// the tar's even when files are written into it after its entry, and that
// a read-only directory still receives its files.
func TestCopyDirectoryTimesAfterContents(t *testing.T) {
	h := newHarness(t)
	dest := t.TempDir()
	mtime := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	body := makeTar(t,
		tarFile{name: "ro/", typ: tar.TypeDir, mode: 0o555, mtime: mtime},
		tarFile{name: "ro/inner/", typ: tar.TypeDir, mode: 0o755, mtime: mtime},
		tarFile{name: "ro/inner/f", body: "f", mtime: mtime},
		tarFile{name: "ro/g", body: "g", mtime: mtime},
	)
	q := asMe(url.Values{"path": {dest}, "mode": {"tar"}})
	h.cp(http.MethodPost, q, tarHeader(2), bytes.NewReader(body)).wantStatus(t, http.StatusOK)
	t.Cleanup(func() { os.Chmod(filepath.Join(dest, "ro"), 0o755) })
	for _, p := range []string{"ro", "ro/inner", "ro/inner/f", "ro/g"} {
		fi, err := os.Stat(filepath.Join(dest, p))
		if err != nil || !fi.ModTime().Equal(mtime) {
			t.Errorf("%s: %v, %v; want mtime %v", p, fi.ModTime().UTC(), err, mtime)
		}
	}
	if fi, _ := os.Stat(filepath.Join(dest, "ro")); fi.Mode().Perm() != 0o555 {
		t.Errorf("ro mode = %v, want 0555", fi.Mode().Perm())
	}
}
