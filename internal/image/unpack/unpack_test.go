package unpack

import (
	"archive/tar"
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

// ent is one tar entry of a test layer.
type ent struct {
	name, body, link string
	typ              byte
	mode             int64
	uid, gid         int
	major, minor     int64
	xattrs           map[string]string
}

func dir(name string) ent        { return ent{name: name, typ: tar.TypeDir, mode: 0o755} }
func file(name, body string) ent { return ent{name: name, body: body, typ: tar.TypeReg, mode: 0o644} }
func symlink(name, target string) ent {
	return ent{name: name, link: target, typ: tar.TypeSymlink, mode: 0o777}
}
func hardlink(name, target string) ent {
	return ent{name: name, link: target, typ: tar.TypeLink, mode: 0o644}
}

func layer(t *testing.T, es ...ent) *bytes.Buffer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range es {
		h := &tar.Header{
			Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: e.mode, Uid: e.uid, Gid: e.gid,
			Size: int64(len(e.body)), ModTime: time.Unix(1700000000, 0), Devmajor: e.major, Devminor: e.minor,
			Format: tar.FormatPAX,
		}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		for k, v := range e.xattrs {
			if h.PAXRecords == nil {
				h.PAXRecords = map[string]string{}
			}
			h.PAXRecords["SCHILY.xattr."+k] = v
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return &buf
}

// newTree returns a Tree staging into <tmp>/stage, and <tmp>.
func newTree(t *testing.T, opt Options) (*Tree, string) {
	t.Helper()
	parent := t.TempDir()
	stage := filepath.Join(parent, "stage")
	if err := os.Mkdir(stage, 0o755); err != nil {
		t.Fatal(err)
	}
	tr, err := New(stage, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr, parent
}

// listing describes every path under dir: "path type [target|content]".
func listing(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			return nil
		}
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			out = append(out, rel+" -> "+target)
		case d.IsDir():
			out = append(out, rel+"/")
		default:
			b, _ := os.ReadFile(p)
			out = append(out, rel+" = "+string(b))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

func eq(t *testing.T, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("tree:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func TestLayersInOrderWithWhiteouts(t *testing.T) {
	tr, _ := newTree(t, Options{})
	layers := [][]ent{
		{dir("etc/"), file("etc/keep", "1"), file("etc/gone", "x"), dir("opt/"), file("opt/old", "o"),
			dir("opt/sub/"), file("opt/sub/deep", "d"), file("replace", "file"), dir("becomes-file/"),
			file("becomes-file/x", "x")},
		{file("etc/.wh.gone", ""), file("opt/new", "n"), file("opt/.wh..wh..opq", ""), dir("opt/sub/"),
			file("opt/sub/fresh", "f"), dir("replace/"), file("becomes-file", "now a file"),
			file(".wh.nothing-there", "")},
	}
	for _, l := range layers {
		if err := tr.Apply(layer(t, l...)); err != nil {
			t.Fatal(err)
		}
	}
	eq(t, listing(t, tr.Dir()), []string{
		"becomes-file = now a file",
		"etc/", "etc/keep = 1",
		"opt/", "opt/new = n", "opt/sub/", "opt/sub/fresh = f",
		"replace/",
	})
	if s := tr.Stats(); s.Whiteouts != 3 || s.Files != 9 {
		t.Errorf("stats %+v: want 3 whiteouts and 9 files", s)
	}
}

func TestSymlinksResolveInsideTheTree(t *testing.T) {
	tr, parent := newTree(t, Options{})
	outside := filepath.Join(parent, "outside")
	if err := os.WriteFile(outside, []byte("host"), 0o644); err != nil {
		t.Fatal(err)
	}
	l1 := layer(t,
		dir("usr/"), dir("usr/lib/"),
		symlink("lib", "usr/lib"),     // relative, as in merged-/usr images
		symlink("abs", "/usr"),        // absolute: the tree's /usr
		symlink("up", "../../../../"), // climbs no higher than the root
		symlink("planted", outside),   // an absolute path of the host
		symlink("loop1", "loop2"), symlink("loop2", "loop1"),
	)
	l2 := layer(t,
		file("lib/a", "through relative"),
		file("abs/b", "through absolute"),
		file("up/c", "through dotdot"),
		file("planted", "replaces the link"), // must not write through it
	)
	for _, l := range []*bytes.Buffer{l1, l2} {
		if err := tr.Apply(l); err != nil {
			t.Fatal(err)
		}
	}
	eq(t, listing(t, tr.Dir()), []string{
		"abs -> /usr", "c = through dotdot", "lib -> usr/lib", "loop1 -> loop2", "loop2 -> loop1",
		"planted = replaces the link", "up -> ../../../../",
		"usr/", "usr/b = through absolute", "usr/lib/", "usr/lib/a = through relative",
	})
	if b, _ := os.ReadFile(outside); string(b) != "host" {
		t.Fatalf("host file changed: %q", b)
	}
	err := tr.Apply(layer(t, file("loop1/x", "")))
	if !errors.Is(err, ErrBadLayer) || !strings.Contains(err.Error(), "too many levels") {
		t.Fatalf("write through a symlink loop: %v, want a bad-layer error", err)
	}
}

func TestHostileLayers(t *testing.T) {
	for _, tt := range []struct {
		name   string
		es     []ent
		errHas string
	}{
		{"dotdot", []ent{file("../escape", "x")}, ".. component"},
		{"inner dotdot", []ent{file("a/../../escape", "x")}, ".. component"},
		{"hard link out", []ent{hardlink("l", "../../etc/passwd")}, "bad hard link target"},
		{"hard link to missing", []ent{hardlink("l", "/etc/passwd")}, "no such file"},
		{"hard link to dir", []ent{dir("d/"), hardlink("l", "d")}, "hard link to directory"},
		{"file under a file", []ent{file("f", ""), file("f/x", "")}, "not a directory"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tr, parent := newTree(t, Options{})
			err := tr.Apply(layer(t, tt.es...))
			if err == nil || !strings.Contains(err.Error(), tt.errHas) {
				t.Fatalf("Apply: %v, want an error containing %q", err, tt.errHas)
			}
			if got := listing(t, parent); len(got) > 0 && got[0] != "stage/" {
				t.Fatalf("something outside the staging dir: %v", got)
			}
			for _, p := range listing(t, parent) {
				if !strings.HasPrefix(p, "stage/") && p != "stage/" {
					t.Fatalf("written outside the staging dir: %s", p)
				}
			}
		})
	}
}

func TestAbsoluteNamesLandInside(t *testing.T) {
	tr, _ := newTree(t, Options{})
	if err := tr.Apply(layer(t, file("/etc/passwd", "inside"), file("./x//y", "z"))); err != nil {
		t.Fatal(err)
	}
	eq(t, listing(t, tr.Dir()), []string{"etc/", "etc/passwd = inside", "x/", "x/y = z"})
}

func TestHardLinks(t *testing.T) {
	tr, _ := newTree(t, Options{})
	if err := tr.Apply(layer(t, dir("bin/"), file("bin/a", "same"), hardlink("bin/b", "/bin/a"), hardlink("c", "bin/a"))); err != nil {
		t.Fatal(err)
	}
	a, _ := os.Stat(filepath.Join(tr.Dir(), "bin/a"))
	c, _ := os.Stat(filepath.Join(tr.Dir(), "c"))
	if !os.SameFile(a, c) {
		t.Fatal("c is not a hard link of bin/a")
	}
}

func TestSpecialsArePlaceholders(t *testing.T) {
	tr, _ := newTree(t, Options{})
	if err := tr.Apply(layer(t,
		dir("dev/"),
		ent{name: "dev/sda", typ: tar.TypeBlock, mode: 0o660, major: 8, gid: 6},
		ent{name: "dev/null", typ: tar.TypeChar, mode: 0o666, major: 1, minor: 3},
		ent{name: "dev/gone", typ: tar.TypeChar, mode: 0o600, major: 1, minor: 1},
		ent{name: "fifo", typ: tar.TypeFifo, mode: 0o644},
	)); err != nil {
		t.Fatal(err)
	}
	// A later layer removes one and replaces another with a file.
	if err := tr.Apply(layer(t, file("dev/.wh.gone", ""), file("dev/null", "plain file now"))); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"dev/sda", "fifo"} {
		st, err := os.Lstat(filepath.Join(tr.Dir(), p))
		if err != nil || !st.Mode().IsRegular() || st.Size() != 0 {
			t.Fatalf("%s: %v %v; want an empty regular placeholder", p, st, err)
		}
	}
	got := tr.Specials()
	want := []Special{
		{Path: "dev/sda", Mode: fs.ModeDevice | 0o660, Major: 8, GID: 6},
		{Path: "fifo", Mode: fs.ModeNamedPipe | 0o644},
	}
	if len(got) != len(want) {
		t.Fatalf("specials %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("special %d: %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestUnprivilegedRecordsWhatToFix(t *testing.T) {
	tr, _ := newTree(t, Options{})
	if err := tr.Apply(layer(t,
		ent{name: "secret", body: "s", typ: tar.TypeReg, mode: 0o000, uid: 0, gid: 42},
		ent{name: "suid", body: "x", typ: tar.TypeReg, mode: 0o4755},
		ent{name: "locked/", typ: tar.TypeDir, mode: 0o000, uid: 1000, gid: 1000},
	)); err != nil {
		t.Fatal(err)
	}
	w := tr.Want()
	if w["secret"] != (Meta{GID: 42, Mode: 0}) {
		t.Errorf("want[secret] = %+v", w["secret"])
	}
	if w["suid"].Mode != fs.ModeSetuid|0o755 {
		t.Errorf("want[suid] = %+v", w["suid"])
	}
	if w["locked"] != (Meta{UID: 1000, GID: 1000, Mode: fs.ModeDir}) {
		t.Errorf("want[locked] = %+v", w["locked"])
	}
	// Staged so that the builder can read it.
	st, err := os.Stat(filepath.Join(tr.Dir(), "secret"))
	if err != nil || st.Mode().Perm()&0o600 != 0o600 {
		t.Fatalf("staged secret %v %v: want owner read/write", st.Mode(), err)
	}
}

func TestPrivilegedSetsOwners(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown")
	}
	tr, _ := newTree(t, Options{Privileged: true})
	if err := tr.Apply(layer(t,
		ent{name: "f", body: "x", typ: tar.TypeReg, mode: 0o4750, uid: 1000, gid: 42},
		ent{name: "cap", body: "x", typ: tar.TypeReg, mode: 0o755, xattrs: map[string]string{"user.test": "v"}},
	)); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(tr.Dir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	uid, gid := owner(st)
	if uid != 1000 || gid != 42 || st.Mode() != fs.ModeSetuid|0o750 {
		t.Fatalf("f: %d:%d %v, want 1000:42 setuid 0750", uid, gid, st.Mode())
	}
	if len(tr.Xattrs()) != 0 {
		t.Fatalf("xattrs left over as root: %+v", tr.Xattrs())
	}
}

func owner(fi fs.FileInfo) (int, int) {
	st := fi.Sys().(*syscall.Stat_t)
	return int(st.Uid), int(st.Gid)
}
