package client

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/api/cpv1"
)

// FuzzCpFromVM plays a hostile guest answering a download (GET
// /vm/{h}/cp): arbitrary cp-v1 headers (X-Slicer-Source-Type,
// X-Slicer-Source-Name-Base64, X-Slicer-File-Mode) and an arbitrary body,
// which for a directory is a tar. It runs what CpFromVM runs on the
// answer (parseCopyMeta, then writeDownload) into a destination that
// holds symbolic links pointing out of it. Whatever the guest sends:
//   - nothing panics;
//   - an accepted source name is a plain file name;
//   - nothing is created or changed outside the destination directory,
//     and no symbolic link appears in it;
//   - when a directory download succeeds, every regular file of the tar
//     (name accepted, not excluded) is there with its last content and
//     permission bits.
func FuzzCpFromVM(f *testing.F) {
	for _, s := range fuzzDownloadSeeds() {
		f.Add(s.body, s.srcType, s.name, s.fileMode, s.src, s.exclude, s.dst)
	}
	f.Fuzz(func(t *testing.T, body []byte, srcType, name, fileMode, src, exclude string, dstKind uint8) {
		h := http.Header{}
		if srcType != "" {
			h.Set(api.HeaderSourceType, srcType)
		}
		if name != "\x00" { // "\x00": no name header at all
			h.Set(api.HeaderSourceNameBase64, name)
		}
		if fileMode != "" {
			h.Set(api.HeaderFileMode, fileMode)
		}
		contents := copyContents(src)
		m, err := parseCopyMeta(h, contents)
		if err != nil {
			return
		}
		if m.name != "" && (m.name == "." || m.name == ".." || strings.ContainsAny(m.name, "/\x00")) {
			t.Fatalf("parseCopyMeta accepted the source name %q", m.name)
		}
		if m.sourceType != api.CopySourceFile && m.sourceType != api.CopySourceDirectory {
			t.Fatalf("parseCopyMeta accepted the source type %q", m.sourceType)
		}

		parent := t.TempDir()
		dir, outside := filepath.Join(parent, "dst"), filepath.Join(parent, "outside")
		fzDownloadDest(t, dir, outside)
		dst := fzDownloadTarget(dir, dstKind)
		before := fzTreeDigest(t, outside)
		opts := CopyOptions{Recursive: true}
		if exclude != "" {
			opts.Exclude = []string{exclude}
		}
		fi, serr := os.Stat(dst)
		target, terr := localTarget(dst, serr == nil, serr == nil && fi.IsDir(), m, contents)
		err = writeDownload(bytes.NewReader(body), dst, m, contents, opts)
		t.Logf("%s %q into %q: %v", m.sourceType, m.name, dst, err)

		if after := fzTreeDigest(t, outside); after != before {
			t.Fatalf("the download changed files outside the destination")
		}
		entries, rerr := os.ReadDir(parent)
		if rerr != nil || len(entries) != 2 {
			t.Fatalf("the download created something next to the destination: %v, %v", entries, rerr)
		}
		fzCheckNoNewLinks(t, dir)
		if err == nil && m.sourceType == api.CopySourceDirectory {
			if terr != nil {
				t.Fatalf("the download succeeded but its target does not resolve: %v", terr)
			}
			fzCheckExtracted(t, target, body, opts.Exclude)
		}
	})
}

// fzDownloadDest makes the destination directory, with a file, a
// directory and links that lead out (relative, absolute, up, a loop), and
// a file outside it that must not change.
func fzDownloadDest(t *testing.T, dir, outside string) {
	t.Helper()
	for _, d := range []string{filepath.Join(dir, "sub"), outside} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for p, s := range map[string]string{filepath.Join(dir, "file"): "old", filepath.Join(outside, "keep"): "keep"} {
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for name, target := range fzLinks(outside) {
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
}

// fzLinks are the links the destination starts with.
func fzLinks(outside string) map[string]string {
	return map[string]string{"out": "../outside", "abs": outside, "loop": "loop", "sub/up": "../.."}
}

// fzDownloadTarget is the dst a download is given: the directory, a
// missing name in it, an existing file, a path through a link out, or the
// directory with a trailing slash.
func fzDownloadTarget(dir string, kind uint8) string {
	switch kind % 5 {
	case 1:
		return filepath.Join(dir, "new")
	case 2:
		return filepath.Join(dir, "file")
	case 3:
		return filepath.Join(dir, "sub", "new")
	case 4:
		return dir + "/"
	}
	return dir
}

// fzCheckNoNewLinks fails if dir holds anything but directories, regular
// files and the links it started with.
func fzCheckNoNewLinks(t *testing.T, dir string) {
	t.Helper()
	links := fzLinks(filepath.Join(filepath.Dir(dir), "outside"))
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		switch typ := d.Type(); {
		case typ&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			if links[filepath.ToSlash(rel)] != target {
				t.Fatalf("a symbolic link %s -> %s appeared in the destination", rel, target)
			}
		case !typ.IsDir() && !typ.IsRegular():
			t.Fatalf("%s in the destination is a %v", rel, typ)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk the destination: %v", err)
	}
}

// fzCheckExtracted checks a successful directory download against the tar
// read again: the last regular-file entry of each accepted name is on
// disk with its content and permission bits.
func fzCheckExtracted(t *testing.T, target string, tarball []byte, exclude []string) {
	t.Helper()
	type file struct {
		body []byte
		mode fs.FileMode
	}
	files := map[string]file{}
	tr := tar.NewReader(bytes.NewReader(tarball))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("success for a tar that does not read: %v", err)
		}
		name, err := cpv1.EntryName(h.Name)
		if err != nil {
			t.Fatalf("success for a tar with entry %q: %v", h.Name, err)
		}
		if name == "." || cpv1.Excluded(name, exclude) || h.Typeflag != tar.TypeReg {
			continue
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("success for a tar whose entry %q does not read: %v", h.Name, err)
		}
		files[name] = file{body, fs.FileMode(h.Mode).Perm()}
	}
	for name, want := range files {
		p := filepath.Join(target, name)
		fi, err := os.Lstat(p)
		if err != nil || !fi.Mode().IsRegular() {
			t.Fatalf("success, but entry %q is not a regular file at %s: %v, %v", name, p, fi, err)
		}
		got, err := os.ReadFile(p)
		if err != nil || !bytes.Equal(got, want.body) {
			t.Fatalf("success, but %q holds %q, want %q (%v)", name, got, want.body, err)
		}
		if fi.Mode() != want.mode {
			t.Fatalf("success, but %q has mode %v, want %v", name, fi.Mode(), want.mode)
		}
	}
}

// fzTreeDigest summarises a directory tree without following links.
func fzTreeDigest(t *testing.T, dir string) string {
	t.Helper()
	h := sha256.New()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s %v %d\n", p, fi.Mode(), fi.Size())
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			h.Write(b)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("read %s: %v", dir, err)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

type fzDownloadSeed struct {
	body                                  []byte
	srcType, name, fileMode, src, exclude string
	dst                                   uint8
}

// fzTar writes a tar of entries (name, type, body), the type defaulting to
// a regular file.
func fzTar(entries ...tar.Header) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range entries {
		body := h.Linkname
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Typeflag == tar.TypeReg {
			h.Size, h.Linkname = int64(len(body)), ""
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		h.ModTime = time.Unix(1700000000, 0)
		if err := tw.WriteHeader(&h); err != nil {
			panic(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write([]byte(body))
		}
	}
	tw.Close()
	return buf.Bytes()
}

// fuzzDownloadSeeds: valid files and trees, and what a hostile guest
// would send: names with "/", "..", NUL; links and ".." in the tar; writes
// through links already in the destination; a truncated or garbage tar.
// In a regular-file entry, Linkname holds the body.
func fuzzDownloadSeeds() []fzDownloadSeed {
	b64 := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	tree := fzTar(
		tar.Header{Name: "d/", Typeflag: tar.TypeDir, Mode: 0o750},
		tar.Header{Name: "d/a.txt", Linkname: "alpha", Mode: 0o600},
		tar.Header{Name: "b.sh", Linkname: "#!/bin/sh\n", Mode: 0o755},
	)
	dir, file := api.CopySourceDirectory, api.CopySourceFile
	return []fzDownloadSeed{
		{[]byte("file body"), file, b64("x.txt"), "0640", "/etc/x.txt", "", 0},
		{[]byte("file body"), file, b64("x.txt"), "", "/etc/x.txt", "", 1},
		{[]byte("file body"), file, b64("x.txt"), "99999", "/etc/x.txt", "", 2},
		{[]byte("file body"), file, b64("../x.txt"), "", "/etc/x.txt", "", 0},
		{[]byte("file body"), file, b64(".."), "", "/etc/x.txt", "", 0},
		{[]byte("file body"), file, b64("a\x00b"), "", "/etc/x.txt", "", 0},
		{[]byte("file body"), file, "not base64!", "", "/etc/x.txt", "", 0},
		{[]byte("file body"), file, b64("out"), "", "/etc/out", "", 0},
		{tree, dir, b64("tree"), "", "/srv/tree", "", 0},
		{tree, dir, b64("tree"), "", "/srv/tree", "*.sh", 1},
		{tree, dir, "", "", "/srv/tree/.", "", 0},
		{tree, dir, b64("tree"), "", "/srv/tree", "", 2},
		{tree, dir, b64("tree"), "", "/srv/tree", "", 4},
		{fzTar(tar.Header{Name: "../evil", Linkname: "x"}), dir, b64("t"), "", "/t", "", 0},
		{fzTar(tar.Header{Name: "/etc/evil", Linkname: "x"}), dir, b64("t"), "", "/t", "", 0},
		{fzTar(tar.Header{Name: "a/../../evil", Linkname: "x"}), dir, b64("t"), "", "/t", "", 0},
		{fzTar(tar.Header{Name: "ok", Linkname: "1"}, tar.Header{Name: "ln", Typeflag: tar.TypeSymlink, Linkname: "/etc"},
			tar.Header{Name: "hard", Typeflag: tar.TypeLink, Linkname: "/etc/shadow"}), dir, "", "", "/t/.", "", 0},
		{fzTar(tar.Header{Name: "out/evil", Linkname: "through a link"}), dir, "", "", "/.", "", 0},
		{fzTar(tar.Header{Name: "abs/evil", Linkname: "through a link"}), dir, "", "", "/.", "", 0},
		{fzTar(tar.Header{Name: "sub/up/outside/keep", Linkname: "through a link up"}), dir, "", "", "/.", "", 0},
		{fzTar(tar.Header{Name: "out/", Typeflag: tar.TypeDir}), dir, "", "", "/.", "", 0},
		{fzTar(tar.Header{Name: "out", Linkname: "replace the link"}), dir, "", "", "/.", "", 0},
		{fzTar(tar.Header{Name: "file/x", Linkname: "under a file"}), dir, "", "", "/.", "", 0},
		{tree[:700], dir, b64("t"), "", "/t", "", 0},
		{[]byte("not a tar"), dir, b64("t"), "", "/t", "", 0},
		{nil, dir, b64("empty"), "", "/empty", "", 0},
		{nil, "fifo", b64("x"), "", "/x", "", 0},
		{nil, file, "\x00", "", "/x", "", 0},
	}
}
