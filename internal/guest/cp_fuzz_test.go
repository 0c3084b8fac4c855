package guest

import (
	"errors"
	"math"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"testing"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/api/cpv1"
)

// FuzzCopyQuery feeds arbitrary cp-v1 queries and X-Slicer-Unpacked-Size
// headers to parseUpload and parseDownload (spec §3.8). A refusal is an
// api.ErrInvalid; what is accepted is what the query said, checked field by
// field: the path as given, the mode's kind, a plain source name, a size
// that is the declared one, permissions that survive their own encoding,
// and exclude globs that are valid and clean.
func FuzzCopyQuery(f *testing.F) {
	for _, s := range []struct {
		q, unpacked string
		length      int64
	}{
		{"path=/tmp/x", "", 5},
		{"path=~/d/&mode=cp-v1-binary&copy_semantics=cp-v1&source_name=a+b.txt&source_type=file&uid=0&gid=10&permissions=600", "", -1},
		{"path=/srv&mode=cp-v1-tar&copy_semantics=cp-v1&source_type=directory&copy_contents=true&exclude=*.log&exclude=./node_modules/", "1234", -1},
		{"path=/d&mode=cp-v1-recursive&exclude=.git", "", -1},
		{"path=/x&uid=4294967295&gid=4294967295&permissions=0o4755", "", 0},
		{"path=/x&mode=tar", "99999999999999999999", -1},
		{"path=/x&mode=tar", "-1", -1},
		{"path=/x&source_name=..", "", 1},
		{"path=/x&source_name=a%2F..%2Fb", "", 1},
		{"path=/x&source_name=a%00b", "", 1},
		{"path=/x%00y&exclude=%5Ba", "", 1},
		{"path=..%2F..%2Fetc%2Fpasswd&permissions=7777&exclude=././a/&exclude=%2F", "", -7},
		{"path=/x&uid=-1&gid=4294967296", "", 0},
	} {
		f.Add(s.q, s.unpacked, s.length)
	}
	f.Fuzz(func(t *testing.T, raw, unpacked string, length int64) {
		q, _ := url.ParseQuery(raw)
		h := http.Header{}
		if unpacked != "" {
			h.Set(api.HeaderUnpackedSize, unpacked)
		}
		u, err := parseUpload(q, h, length)
		if err != nil {
			fzMustBeInvalid(t, "parseUpload", raw, err)
		} else {
			fzCheckUpload(t, q, unpacked, length, u)
		}
		d, err := parseDownload(q)
		if err != nil {
			fzMustBeInvalid(t, "parseDownload", raw, err)
			return
		}
		if d.rawPath == "" || d.rawPath != q.Get("path") {
			t.Fatalf("parseDownload(%q): path %q, want %q", raw, d.rawPath, q.Get("path"))
		}
		fzCheckOwner(t, q, d.uid, d.gid)
		fzCheckExcludes(t, d.exclude)
	})
}

func fzMustBeInvalid(t *testing.T, fn, raw string, err error) {
	t.Helper()
	if !errors.Is(err, api.ErrInvalid) || err.Error() == "" {
		t.Fatalf("%s(%q): error %v is not api.ErrInvalid", fn, raw, err)
	}
}

func fzCheckUpload(t *testing.T, q url.Values, unpacked string, length int64, u upload) {
	t.Helper()
	mode := q.Get("mode")
	wantTar := mode == api.CopyModeTar || mode == api.CopyModeLegacyTar
	switch {
	case u.rawPath == "" || u.rawPath != q.Get("path"):
		t.Fatalf("upload path %q, want %q", u.rawPath, q.Get("path"))
	case u.tar != wantTar:
		t.Fatalf("mode %q: tar = %v", mode, u.tar)
	case u.sourceName != "" && (u.sourceName == "." || u.sourceName == ".." || strings.ContainsAny(u.sourceName, "/\x00")):
		t.Fatalf("accepted source_name %q, which is not a plain file name", u.sourceName)
	case u.sourceName != "" && path.Join("/dest", u.sourceName) != "/dest/"+u.sourceName:
		t.Fatalf("source_name %q does not name an entry of the destination directory", u.sourceName)
	}
	var want int64 = -1
	switch {
	case !u.tar:
		want = max(length, -1)
	case unpacked != "":
		n, err := strconv.ParseInt(unpacked, 10, 64)
		if err != nil || n < 0 {
			t.Fatalf("accepted %s %q", api.HeaderUnpackedSize, unpacked)
		}
		want = n
	}
	if u.size != want {
		t.Fatalf("declared size %d, want %d (tar %v, header %q, length %d)", u.size, want, u.tar, unpacked, length)
	}
	if u.perm != nil {
		again, err := parsePermissions(fsModeString(*u.perm))
		if err != nil || again != *u.perm {
			t.Fatalf("permissions %q = %v, which encodes as %q and decodes as %v, %v", q.Get("permissions"), *u.perm, fsModeString(*u.perm), again, err)
		}
	}
	fzCheckOwner(t, q, u.uid, u.gid)
	fzCheckExcludes(t, u.exclude)
}

// checkOwner: an accepted uid or gid is the number given, and the SDK's
// NonRootUser (MaxUint32) means the default user (nil).
func fzCheckOwner(t *testing.T, q url.Values, uid, gid *uint32) {
	t.Helper()
	for _, c := range []struct {
		name string
		got  *uint32
	}{{"uid", uid}, {"gid", gid}} {
		v := q.Get(c.name)
		n, err := strconv.ParseUint(v, 10, 32)
		switch {
		case v == "" || err == nil && n == math.MaxUint32:
			if c.got != nil {
				t.Fatalf("%s=%q gave %d, want the default user", c.name, v, *c.got)
			}
		case err != nil:
			t.Fatalf("accepted %s=%q", c.name, v)
		case c.got == nil || uint64(*c.got) != n:
			t.Fatalf("%s=%q gave %v", c.name, v, c.got)
		}
	}
}

// checkExcludes: every glob is valid, non-empty, without a trailing slash
// or a leading "./" (which could never match a clean entry name).
func fzCheckExcludes(t *testing.T, globs []string) {
	t.Helper()
	for _, g := range globs {
		if _, err := path.Match(g, ""); err != nil || g == "" || strings.HasSuffix(g, "/") || strings.HasPrefix(g, "./") {
			t.Fatalf("exclude glob %q is not valid and clean (%v)", g, err)
		}
	}
}

// FuzzTarEntryName feeds arbitrary tar entry names to entryName, the check
// every uploaded entry passes before anything is written. An accepted name
// is clean, relative, free of ".." and NUL, and so stays inside whatever
// directory it is joined to; a refused one is an api.ErrInvalid. Whatever
// the exclude globs, matching never panics.
func FuzzTarEntryName(f *testing.F) {
	for _, s := range []string{
		"a.txt", "sub/", "./sub/b.txt", "sub//b.txt", "./", ".", "a..b",
		"..", "../evil", "a/../../evil", "a/../b", "sub/..", "/etc/passwd",
		"", "a\x00b", "\x00", "//", "./../x", "a/./../..", strings.Repeat("a/", 2048),
	} {
		f.Add(s, "*.log")
	}
	f.Fuzz(func(t *testing.T, name, glob string) {
		got, err := cpv1.EntryName(name)
		if err != nil {
			if !errors.Is(err, api.ErrInvalid) {
				t.Fatalf("cpv1.EntryName(%q): error %v is not api.ErrInvalid", name, err)
			}
		} else {
			joined := path.Join("/dest", got)
			switch {
			case got == "" || got != path.Clean(got) || path.IsAbs(got):
				t.Fatalf("cpv1.EntryName(%q) = %q, which is not clean and relative", name, got)
			case strings.ContainsRune(got, 0):
				t.Fatalf("cpv1.EntryName(%q) = %q keeps a NUL", name, got)
			case got == "..", strings.HasPrefix(got, "../"), strings.Contains(got, "/../"), strings.HasSuffix(got, "/.."):
				t.Fatalf("cpv1.EntryName(%q) = %q climbs out", name, got)
			case joined != "/dest" && !strings.HasPrefix(joined, "/dest/"):
				t.Fatalf("cpv1.EntryName(%q) = %q, which joined to /dest is %q", name, got, joined)
			}
		}
		globs, err := cpv1.ParseExcludes([]string{glob})
		if err != nil {
			fzMustBeInvalid(t, "parseExcludes", glob, err)
			return
		}
		fzCheckExcludes(t, globs)
		if err == nil && got != "" {
			_ = cpv1.Excluded(got, globs)
		}
	})
}
