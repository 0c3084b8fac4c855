package client

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/openslicer/openslicer/api"
)

// copyMeta is what a cp-v1 download says about its source.
type copyMeta struct {
	sourceType string // api.CopySourceFile or api.CopySourceDirectory
	name       string // base name; empty only for a contents copy
	fileMode   string // octal, files only; may be empty
}

// parseCopyMeta reads and checks the cp-v1 response headers. The name must
// be a plain base name, so it cannot steer the write elsewhere.
func parseCopyMeta(h http.Header, contents bool) (copyMeta, error) {
	m := copyMeta{sourceType: h.Get(api.HeaderSourceType), fileMode: h.Get(api.HeaderFileMode)}
	enc, hasName := h[http.CanonicalHeaderKey(api.HeaderSourceNameBase64)]
	switch {
	case m.sourceType == "" && !hasName && h.Get(api.HeaderSourceName) == "":
		return m, errors.New("copy response did not include cp-v1 metadata")
	case m.sourceType == "" || !hasName:
		return m, errors.New("incomplete copy metadata in the response")
	case m.sourceType != api.CopySourceFile && m.sourceType != api.CopySourceDirectory:
		return m, fmt.Errorf("copy response has source type %q", m.sourceType)
	}
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(enc[0], "="))
	if err != nil {
		return m, fmt.Errorf("decode copy source name: %w", err)
	}
	m.name = string(b)
	if m.name == "" && !contents {
		return m, errors.New("copy response has an empty source name")
	}
	if m.name != "" && (m.name == "." || m.name == ".." || strings.ContainsAny(m.name, "/\x00")) {
		return m, fmt.Errorf("copy response has an unsafe source name %q", m.name)
	}
	return m, nil
}

// localTarget resolves where a download lands, like cp(1). dst is the
// destination as given; exists and isDir describe it. A file goes into an
// existing directory (or a dst ending in "/", which must exist) under its
// name, else to dst itself. A directory goes under its name into an
// existing directory unless contents is set; otherwise dst is created.
func localTarget(dst string, exists, isDir bool, m copyMeta, contents bool) (string, error) {
	slash := strings.HasSuffix(dst, "/") || strings.HasSuffix(dst, string(filepath.Separator))
	if m.sourceType == api.CopySourceFile {
		switch {
		case isDir:
			if m.name == "" {
				return "", fmt.Errorf("%w: no file name to write into directory %q", api.ErrInvalid, dst)
			}
			return filepath.Join(dst, m.name), nil
		case slash:
			return "", fmt.Errorf("%w: destination directory %q does not exist", api.ErrNotFound, dst)
		}
		return filepath.Clean(dst), nil
	}
	switch {
	case exists && !isDir:
		return "", fmt.Errorf("%w: cannot copy a directory onto file %q", api.ErrInvalid, dst)
	case isDir && !contents && m.name != "":
		return filepath.Join(dst, m.name), nil
	}
	return filepath.Clean(dst), nil
}

// downloadMode picks the cp-v1 mode of a download and its Accept header.
func downloadMode(opts CopyOptions) (mode, accept string) {
	switch {
	case opts.Tar:
		return api.CopyModeTar, "application/x-tar"
	case opts.Recursive:
		return api.CopyModeRecursive, "application/octet-stream, application/x-tar"
	}
	return api.CopyModeBinary, "application/octet-stream"
}

// CpFromVM copies a file, or with opts.Recursive a directory, from src in
// a VM to the local dst (GET /vm/{hostname}/cp, cp-v1), resolving dst like
// cp(1). Files are written through a temporary name and renamed; tar
// entries cannot escape the destination. An agent that predates cp-v1 is
// retried in the legacy modes.
func (c *Client) CpFromVM(ctx context.Context, hostname, src, dst string, opts CopyOptions) error {
	contents := copyContents(src)
	mode, accept := downloadMode(opts)
	q := url.Values{"path": {src}, "mode": {mode}, "copy_semantics": {api.CopySemanticsV1}}
	for _, g := range opts.Exclude {
		q.Add("exclude", g)
	}
	resp, err := c.getCopy(ctx, hostname, q, accept)
	var m copyMeta
	if invalidMode(err, mode) {
		resp, m, err = c.legacyDownload(ctx, hostname, src, mode, opts)
	} else if err == nil {
		m, err = parseCopyMeta(resp.Header, contents)
		if err != nil {
			resp.Body.Close()
		}
	}
	if err != nil {
		return notExist(err)
	}
	defer resp.Body.Close()
	if m.sourceType == api.CopySourceDirectory && !opts.Recursive && !opts.Tar {
		return fmt.Errorf("%w: %q is a directory (copy it with recursive)", api.ErrInvalid, src)
	}
	return writeDownload(resp.Body, dst, m, contents, opts)
}

// legacyDownload fetches src from an agent without cp-v1: binary first,
// then tar when a recursive copy meets a directory. The name comes from
// src, since old agents send no metadata.
func (c *Client) legacyDownload(ctx context.Context, hostname, src, mode string, opts CopyOptions) (*http.Response, copyMeta, error) {
	m := copyMeta{name: path.Base(path.Clean(src)), sourceType: api.CopySourceFile}
	if copyContents(src) {
		m.name = ""
	}
	try := api.CopyModeLegacyBin
	if mode == api.CopyModeTar {
		try = api.CopyModeLegacyTar
	}
	q := url.Values{"path": {src}, "mode": {try}}
	resp, err := c.getCopy(ctx, hostname, q, "")
	var e *api.Error
	if mode == api.CopyModeRecursive && errors.As(err, &e) && e.StatusCode == http.StatusBadRequest &&
		strings.Contains(e.Message, "must specify a file not a directory") {
		try = api.CopyModeLegacyTar
		q.Set("mode", try)
		resp, err = c.getCopy(ctx, hostname, q, "")
	}
	if try == api.CopyModeLegacyTar {
		m.sourceType = api.CopySourceDirectory
	}
	return resp, m, err
}

func (c *Client) getCopy(ctx context.Context, hostname string, q url.Values, accept string) (*http.Response, error) {
	p, err := escapePath("vm", hostname, "cp")
	if err != nil {
		return nil, err
	}
	var hdr http.Header
	if accept != "" {
		hdr = http.Header{"Accept": {accept}}
	}
	return c.doHeader(ctx, http.MethodGet, p, q, nil, hdr)
}

// writeDownload puts a download's body at its resolved local target.
func writeDownload(body io.Reader, dst string, m copyMeta, contents bool, opts CopyOptions) error {
	fi, err := os.Stat(dst)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("stat destination: %w", err)
	}
	target, err := localTarget(dst, err == nil, err == nil && fi.IsDir(), m, contents)
	if err != nil {
		return err
	}
	uid, gid := -1, -1
	if opts.UID != nil {
		uid = int(*opts.UID)
	}
	if opts.GID != nil {
		gid = int(*opts.GID)
	}
	if m.sourceType == api.CopySourceDirectory {
		if err := os.MkdirAll(target, 0o755); err != nil {
			return fmt.Errorf("create %q: %w", target, err)
		}
		return extractTar(body, target, opts.Exclude, uid, gid)
	}
	perm := firstNonEmpty(opts.Permissions, firstNonEmpty(m.fileMode, "0600"))
	mode, err := ParseMode(perm)
	if err != nil {
		return err
	}
	return writeLocalFile(target, body, mode, uid, gid)
}

// writeLocalFile writes r to target through a temporary file in the same
// directory and a rename.
func writeLocalFile(target string, r io.Reader, mode fs.FileMode, uid, gid int) error {
	dir := filepath.Dir(target)
	f, err := os.CreateTemp(dir, ".slicer-cp-*")
	if err != nil {
		return fmt.Errorf("write %q: %w", target, err)
	}
	tmp := f.Name()
	_, err = io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, mode)
	}
	if err == nil && (uid >= 0 || gid >= 0) {
		err = os.Lchown(tmp, uid, gid)
	}
	if err == nil {
		err = os.Rename(tmp, target)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write %q: %w", target, err)
	}
	return nil
}

// ReadFile returns the contents of a file in a VM (GET /vm/{hostname}/cp
// with only path). A missing file is an error matching os.ErrNotExist.
func (c *Client) ReadFile(ctx context.Context, hostname, path string) ([]byte, error) {
	resp, err := c.getCopy(ctx, hostname, url.Values{"path": {path}}, "")
	if err != nil {
		return nil, notExist(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("read %q: %w", path, err)
	}
	return b, nil
}
