package guest

import (
	"fmt"
	"io/fs"
	"math"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/api/cpv1"
)

// Copy (spec §3.8): the pure part. What a request asks for is worked out
// here, without touching the file system; cp_linux.go and the files it
// calls do the work.

// upload is one write into the guest, from the query of POST /v1/cp or
// from a chunked-copy manifest.
type upload struct {
	tar        bool   // the body is a tar stream, else a single file
	v1         bool   // cp-v1 destination resolution, else path as given
	rawPath    string // destination as requested ("~" allowed)
	sourceName string // base name of the source, may be empty
	contents   bool   // copy a directory's contents, not the directory
	uid, gid   *uint32
	perm       *fs.FileMode // nil: the default (see fileMode)
	exclude    []string     // tar only
	size       int64        // declared bytes to write; -1 unknown
}

// download is one read from the guest, from the query of GET /v1/cp.
type download struct {
	rawPath  string
	mode     string // api.CopyModeBinary, api.CopyModeTar or api.CopyModeRecursive
	v1       bool   // answer with the cp-v1 metadata headers
	uid, gid *uint32
	exclude  []string
}

// copyMode maps the mode parameter to the v1 mode it means and whether
// it asked for cp-v1. An empty mode is legacy binary (WriteFile and
// ReadFile send only path). An unknown mode is an error naming it, never
// "invalid mode: …", which the SDK would take for an agent too old for
// cp-v1.
func copyMode(mode string) (v1mode string, v1 bool, err error) {
	switch mode {
	case api.CopyModeBinary, api.CopyModeTar, api.CopyModeRecursive:
		return mode, true, nil
	case "", api.CopyModeLegacyBin:
		return api.CopyModeBinary, false, nil
	case api.CopyModeLegacyTar:
		return api.CopyModeTar, false, nil
	}
	return "", false, fmt.Errorf("%w: unknown copy mode %q (want %s, %s, %s, %s or %s)", api.ErrInvalid, mode,
		api.CopyModeBinary, api.CopyModeTar, api.CopyModeRecursive, api.CopyModeLegacyBin, api.CopyModeLegacyTar)
}

// copySemantics reads copy_semantics: empty, or cp-v1.
func copySemantics(q url.Values) (bool, error) {
	switch v := q.Get("copy_semantics"); v {
	case "":
		return false, nil
	case api.CopySemanticsV1:
		return true, nil
	default:
		return false, fmt.Errorf("%w: copy_semantics %q: want %q", api.ErrInvalid, v, api.CopySemanticsV1)
	}
}

// parseUpload reads the query and headers of POST /v1/cp. contentLength is
// the request's (-1 when unknown); it is the declared size of a single
// file, X-Slicer-Unpacked-Size that of a tar.
func parseUpload(q url.Values, h http.Header, contentLength int64) (upload, error) {
	mode, v1, err := copyMode(q.Get("mode"))
	if err != nil {
		return upload{}, err
	}
	if mode == api.CopyModeRecursive {
		return upload{}, fmt.Errorf("%w: mode %s is for downloads only", api.ErrInvalid, mode)
	}
	sem, err := copySemantics(q)
	if err != nil {
		return upload{}, err
	}
	u := upload{tar: mode == api.CopyModeTar, v1: v1 || sem, rawPath: q.Get("path"), sourceName: q.Get("source_name"), size: -1}
	if u.rawPath == "" {
		return upload{}, fmt.Errorf("%w: path is required", api.ErrInvalid)
	}
	if err := checkSourceName(u.sourceName); err != nil {
		return upload{}, err
	}
	if err := checkSourceType(q.Get("source_type"), u.tar); err != nil {
		return upload{}, err
	}
	if u.contents, err = queryBool(q, "copy_contents"); err != nil {
		return upload{}, err
	}
	if u.uid, u.gid, err = queryOwner(q); err != nil {
		return upload{}, err
	}
	if p := q.Get("permissions"); p != "" {
		m, err := parsePermissions(p)
		if err != nil {
			return upload{}, err
		}
		u.perm = &m
	}
	if u.exclude, err = cpv1.ParseExcludes(q["exclude"]); err != nil {
		return upload{}, err
	}
	u.size, err = declaredSize(u.tar, h.Get(api.HeaderUnpackedSize), contentLength)
	return u, err
}

// parseDownload reads the query of GET /v1/cp.
func parseDownload(q url.Values) (download, error) {
	mode, v1, err := copyMode(q.Get("mode"))
	if err != nil {
		return download{}, err
	}
	sem, err := copySemantics(q)
	if err != nil {
		return download{}, err
	}
	d := download{rawPath: q.Get("path"), mode: mode, v1: v1 || sem}
	if d.rawPath == "" {
		return download{}, fmt.Errorf("%w: path is required", api.ErrInvalid)
	}
	if d.uid, d.gid, err = queryOwner(q); err != nil {
		return download{}, err
	}
	d.exclude, err = cpv1.ParseExcludes(q["exclude"])
	return d, err
}

// declaredSize is how many bytes an upload says it will write: for a tar
// the X-Slicer-Unpacked-Size header, for a file the Content-Length; -1
// when not said.
func declaredSize(tar bool, unpacked string, contentLength int64) (int64, error) {
	if !tar {
		return max(contentLength, -1), nil
	}
	if unpacked == "" {
		return -1, nil
	}
	n, err := strconv.ParseInt(unpacked, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%w: %s %q: want a byte count", api.ErrInvalid, api.HeaderUnpackedSize, unpacked)
	}
	return n, nil
}

// checkSourceName accepts a plain base name, or nothing.
func checkSourceName(name string) error {
	if name == "" {
		return nil
	}
	if name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return fmt.Errorf("%w: source_name %q: want a plain file name", api.ErrInvalid, name)
	}
	return nil
}

// checkSourceType accepts a source_type that agrees with the mode, or
// nothing.
func checkSourceType(t string, tar bool) error {
	want := api.CopySourceFile
	if tar {
		want = api.CopySourceDirectory
	}
	if t != "" && t != want {
		return fmt.Errorf("%w: source_type %q does not match the mode (want %q)", api.ErrInvalid, t, want)
	}
	return nil
}

// queryBool reads an optional boolean parameter.
func queryBool(q url.Values, name string) (bool, error) {
	v := q.Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%w: %s %q: want true or false", api.ErrInvalid, name, v)
	}
	return b, nil
}

// queryOwner reads uid and gid. Absent, or the SDK's NonRootUser
// (MaxUint32), is nil: the image's default user.
func queryOwner(q url.Values) (uid, gid *uint32, err error) {
	if uid, err = parseID("uid", q.Get("uid")); err != nil {
		return nil, nil, err
	}
	gid, err = parseID("gid", q.Get("gid"))
	return uid, gid, err
}

// parseID reads a uid or gid; empty and MaxUint32 are nil.
func parseID(name, v string) (*uint32, error) {
	if v == "" {
		return nil, nil
	}
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("%w: %s %q: want a number", api.ErrInvalid, name, v)
	}
	if n == math.MaxUint32 {
		return nil, nil
	}
	id := uint32(n)
	return &id, nil
}

// parsePermissions reads an octal mode, with or without a leading 0 (or
// 0o): "0644", "600", "4755". The setuid, setgid and sticky bits are kept.
func parsePermissions(s string) (fs.FileMode, error) {
	n, ok := parseOctal(s, 0o7777)
	if !ok {
		return 0, fmt.Errorf("%w: permissions %q: want an octal mode like 0644", api.ErrInvalid, s)
	}
	m := fs.FileMode(n & 0o777)
	specials := []struct {
		bit  uint32
		flag fs.FileMode
	}{{0o4000, fs.ModeSetuid}, {0o2000, fs.ModeSetgid}, {0o1000, fs.ModeSticky}}
	for _, sp := range specials {
		if n&sp.bit != 0 {
			m |= sp.flag
		}
	}
	return m, nil
}

// octalMode formats the permission bits of m as X-Slicer-File-Mode does:
// "0644".
func octalMode(m fs.FileMode) string {
	return fmt.Sprintf("%04o", uint32(m.Perm()))
}

// downloadName is the X-Slicer-Source-Name-Base64 of a download: the base
// name of the cleaned path, or nothing when the request named a
// directory's contents ("dir/.") or the root, which have no name.
func downloadName(rawPath, cleaned string) string {
	if strings.HasSuffix(rawPath, "/.") || rawPath == "." || cleaned == "/" {
		return ""
	}
	return path.Base(cleaned)
}
