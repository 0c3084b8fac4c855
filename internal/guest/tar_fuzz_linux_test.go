package guest

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/api/cpv1"
	"github.com/openslicer/openslicer/internal/agent"
)

// FuzzAgentTarUpload uploads arbitrary bytes as a cp-v1 tar (POST /v1/cp,
// mode cp-v1-tar) into a destination that already holds symbolic links
// pointing out of it, through the agent's real handler. Whatever the
// stream holds:
//   - the handler does not panic, and answers 200, a 4xx, or 507 for a
//     declared size that does not fit;
//   - nothing outside the destination changes, and no symbolic link,
//     device or fifo appears in it (links in the tar are skipped, links
//     already there are never written through);
//   - on 200, every regular file the tar holds (name accepted, not
//     excluded) is there with the last content and permission bits the tar
//     gave it, and no more file bytes were written than
//     X-Slicer-Unpacked-Size declared.
func FuzzAgentTarUpload(f *testing.F) {
	if os.Geteuid() != 0 {
		// The agent is the guest's root process: it gives files their
		// owners and acts as other users. Run as another user its
		// answers are the environment's (EPERM), not the request's.
		f.Skip("the agent's handlers run as root, as in the guest")
	}
	for _, s := range fuzzTarSeeds() {
		f.Add(s.tar, s.exclude, s.unpacked, s.perms)
	}
	f.Fuzz(func(t *testing.T, tarball []byte, exclude, unpacked, perms string) {
		a := newFuzzAgent(t)
		dest := filepath.Join(a.root, "dest")
		links := fuzzDestWithLinks(t, a, dest)
		before := a.outsideDigest(t)

		q := url.Values{"path": {dest}, "mode": {api.CopyModeTar}, "copy_semantics": {api.CopySemanticsV1},
			"source_type": {api.CopySourceDirectory}, "copy_contents": {"true"}, "uid": {fuzzUID()}, "gid": {fuzzGID()}}
		if exclude != "" {
			q.Set("exclude", exclude)
		}
		if perms != "" {
			q.Set("permissions", perms)
		}
		r, err := http.NewRequestWithContext(fuzzContext(t), http.MethodPost, agent.PathCopy+"?"+q.Encode(), nil)
		if err != nil {
			t.Fatal(err)
		}
		r.Body, r.ContentLength = newBodyReader(tarball, int64(len(tarball))), int64(len(tarball))
		r.Header.Set("Content-Type", "application/x-tar")
		if unpacked != "" {
			r.Header.Set(api.HeaderUnpackedSize, unpacked)
		}
		w, aborted := a.serve(t, r)
		status := w.code()
		t.Logf("status %d: %s", status, w.text())
		switch {
		case aborted:
			t.Fatalf("an upload aborted its answer")
		case status == http.StatusInsufficientStorage:
			if unpacked == "" {
				t.Fatalf("507 without a declared size: %s", w.text())
			}
		case status >= 500:
			t.Fatalf("status %d for a tar upload: %s", status, w.text())
		}
		if after := a.outsideDigest(t); after != before {
			t.Fatalf("the upload changed files outside the destination (status %d: %s)", status, w.text())
		}
		fuzzCheckNoNewLinks(t, dest, links)
		if status == http.StatusOK {
			fuzzCheckExtracted(t, dest, tarball, q, unpacked)
		}
	})
}

// fuzzDestWithLinks makes dest with a file, a directory, and symbolic links
// that lead out of it (relative, absolute, and to itself), and returns the
// links and their targets.
func fuzzDestWithLinks(t *testing.T, a *fuzzAgent, dest string) map[string]string {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dest, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dest, "d", "f"), []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	links := map[string]string{"out": "../../outside", "abs": a.outside, "loop": "loop", "d/up": "../.."}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(dest, name)); err != nil {
			t.Fatal(err)
		}
	}
	return links
}

// fuzzCheckNoNewLinks fails if dest holds anything but directories,
// regular files and the links it started with.
func fuzzCheckNoNewLinks(t *testing.T, dest string, links map[string]string) {
	t.Helper()
	err := filepath.WalkDir(dest, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dest, p)
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

// fuzzCheckExtracted checks a 200 upload against the tar itself, read
// again: the last regular-file entry of each accepted name is on disk with
// its content and permission bits.
func fuzzCheckExtracted(t *testing.T, dest string, tarball []byte, q url.Values, unpacked string) {
	t.Helper()
	excludes, _ := cpv1.ParseExcludes(q["exclude"])
	var perm *fs.FileMode
	if p := q.Get("permissions"); p != "" {
		m, err := parsePermissions(p)
		if err != nil {
			t.Fatalf("200 with permissions %q: %v", p, err)
		}
		perm = &m
	}
	type file struct {
		body []byte
		mode fs.FileMode
	}
	files := map[string]file{}
	var total int64
	tr := tar.NewReader(bytes.NewReader(tarball))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("200 for a tar that does not read: %v", err)
		}
		name, err := cpv1.EntryName(h.Name)
		if err != nil {
			t.Fatalf("200 for a tar with entry %q: %v", h.Name, err)
		}
		if name == "." || cpv1.Excluded(name, excludes) || h.Typeflag != tar.TypeReg {
			continue
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("200 for a tar whose entry %q does not read: %v", h.Name, err)
		}
		total += int64(len(body))
		files[name] = file{body, entryMode(perm, h.Mode)}
	}
	if unpacked != "" {
		if n, err := parseSize(unpacked); err != nil || total > n {
			t.Fatalf("200 writing %d bytes with %s %q", total, api.HeaderUnpackedSize, unpacked)
		}
	}
	for name, want := range files {
		p := filepath.Join(dest, filepath.FromSlash(name))
		fi, err := os.Lstat(p)
		if err != nil || !fi.Mode().IsRegular() {
			t.Fatalf("200, but entry %q is not a regular file on disk: %v, %v", name, fi, err)
		}
		got, err := os.ReadFile(p)
		if err != nil || !bytes.Equal(got, want.body) {
			t.Fatalf("200, but %q holds %q, want %q (%v)", name, got, want.body, err)
		}
		if fi.Mode() != want.mode {
			t.Fatalf("200, but %q has mode %v, want %v", name, fi.Mode(), want.mode)
		}
	}
}

// parseSize reads a declared byte count as the agent does.
func parseSize(s string) (int64, error) { return declaredSize(true, s, -1) }

// fuzzTarSeed is one seed of FuzzAgentTarUpload.
type fuzzTarSeed struct {
	tar                      []byte
	exclude, unpacked, perms string
}

// fzEntry is one entry of a seed tar.
type fzEntry struct {
	name, body, link string
	typ              byte
	mode             int64
	size             int64 // declared size when not len(body)
}

// fzTar writes entries as a tar, cut to the first cut bytes when cut > 0.
func fzTar(cut int, entries ...fzEntry) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Linkname: e.link, ModTime: time.Unix(1700000000, 0),
			Size: int64(len(e.body)), Format: tar.FormatPAX}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if h.Typeflag != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			panic(err)
		}
		tw.Write([]byte(e.body))
	}
	tw.Close()
	b := buf.Bytes()
	if cut > 0 && cut < len(b) {
		b = b[:cut]
	}
	return b
}

// fzNULName is a tar whose entry name holds a NUL: in the ustar name
// field (readers stop at it), or in a PAX path record.
func fzNULName(pax bool) []byte {
	name := "aZb"
	if pax {
		name = strings.Repeat("p", 120) + "Z"
	}
	b := fzTar(0, fzEntry{name: name, body: "nul"})
	i := bytes.IndexByte(b, 'Z')
	b[i] = 0
	if !pax { // the name is in the header block: fix its checksum
		var sum int64
		for j, c := range b[:512] {
			if j >= 148 && j < 156 {
				c = ' '
			}
			sum += int64(c)
		}
		copy(b[148:156], fmt.Sprintf("%06o\x00 ", sum))
	}
	return b
}

// fzHugeHeader is a tar header declaring size bytes of content that never
// come.
func fzHugeHeader(size int64) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	_ = tw.WriteHeader(&tar.Header{Name: "huge", Typeflag: tar.TypeReg, Mode: 0o644, Size: size, Format: tar.FormatPAX})
	tw.Flush()
	return buf.Bytes()
}

// fuzzTarSeeds are valid uploads and the hostile cases: "..", absolute
// names, NUL in names, links out, writes through existing links, huge
// declared sizes, truncation, and conflicts between files and directories.
func fuzzTarSeeds() []fuzzTarSeed {
	ok := fzTar(0,
		fzEntry{name: "sub/", typ: tar.TypeDir, mode: 0o750},
		fzEntry{name: "sub/a.txt", body: "alpha", mode: 0o600},
		fzEntry{name: "./b.sh", body: "#!/bin/sh\n", mode: 0o755},
		fzEntry{name: "sub/a.txt", body: "again"},
	)
	return []fuzzTarSeed{
		{tar: ok},
		{tar: ok, exclude: "*.sh", unpacked: "20", perms: "0640"},
		{tar: ok, unpacked: "3"},
		{tar: ok, unpacked: "99999999999999999"},
		{tar: ok, exclude: "[", perms: "9"},
		{tar: fzTar(0, fzEntry{name: "../x", body: "escape"})},
		{tar: fzTar(0, fzEntry{name: "ok1", body: "1"}, fzEntry{name: "a/../../x", body: "escape"})},
		{tar: fzTar(0, fzEntry{name: "/etc/passwd", body: "root::0:0::/:/bin/sh\n"})},
		{tar: fzNULName(false)},
		{tar: fzNULName(true)},
		{tar: fzTar(0, fzEntry{name: "ln", typ: tar.TypeSymlink, link: "/etc"}, fzEntry{name: "ln/passwd", body: "x"})},
		{tar: fzTar(0, fzEntry{name: "hard", typ: tar.TypeLink, link: "/etc/shadow"})},
		{tar: fzTar(0, fzEntry{name: "dev", typ: tar.TypeChar}, fzEntry{name: "fifo", typ: tar.TypeFifo})},
		{tar: fzTar(0, fzEntry{name: "out/keep", body: "through an existing link"})},
		{tar: fzTar(0, fzEntry{name: "abs/keep", body: "through an absolute link"})},
		{tar: fzTar(0, fzEntry{name: "d/up/outside/keep", body: "through a link up"})},
		{tar: fzTar(0, fzEntry{name: "out", body: "replace the link itself"})},
		{tar: fzTar(0, fzEntry{name: "loop/x", body: "through a loop"})},
		{tar: fzTar(0, fzEntry{name: "d", body: "a file over a directory"})},
		{tar: fzTar(0, fzEntry{name: "d/f/", typ: tar.TypeDir})},
		{tar: fzTar(0, fzEntry{name: "f", body: "x"}, fzEntry{name: "f/g", body: "under a file"})},
		{tar: fzHugeHeader(1 << 40)},
		{tar: fzHugeHeader(1 << 40), unpacked: "100"},
		{tar: fzTar(700, fzEntry{name: "cut", body: strings.Repeat("x", 2000)})},
		{tar: fzTar(0, fzEntry{name: strings.Repeat("n", 300), body: "long name"})},
		{tar: []byte("not a tar at all")},
		{tar: nil},
	}
}
