package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/openslicer/openslicer/api"
)

// CopyOptions tune a copy between the host and a VM.
type CopyOptions struct {
	// Recursive allows copying a directory (as a tar stream).
	Recursive bool
	// Tar forces tar mode: the source must be a directory.
	Tar bool
	// UID and GID own what is written; nil means the guest's default user
	// on upload (0 is root) and the current user on download.
	UID, GID *uint32
	// Permissions is an octal mode ("0644" or "644") for what is written.
	// On download it applies to a single file only.
	Permissions string
	// Exclude holds globs, matched against relative paths and base names,
	// for directory copies.
	Exclude []string
}

// ownerQuery adds the uid, gid and permissions of o to q.
func (o CopyOptions) ownerQuery(q url.Values) {
	if o.UID != nil {
		q.Set("uid", strconv.FormatUint(uint64(*o.UID), 10))
	}
	if o.GID != nil {
		q.Set("gid", strconv.FormatUint(uint64(*o.GID), 10))
	}
	setIf(q, "permissions", o.Permissions)
}

// ParseMode parses an octal permission string, with or without a leading 0.
func ParseMode(s string) (fs.FileMode, error) {
	n, err := strconv.ParseUint(s, 8, 32)
	if err != nil || n > 0o7777 {
		return 0, fmt.Errorf("%w: permissions %q: want an octal mode like 0644", api.ErrInvalid, s)
	}
	return fs.FileMode(n), nil
}

// copyContents reports whether a source names a directory's contents
// rather than the directory: it ends in "/." or is the root.
func copyContents(src string) bool {
	return strings.HasSuffix(src, "/.") || src == "." || path.Clean(filepath.ToSlash(src)) == "/"
}

// legacyMode is the pre-cp-v1 mode a v1 mode falls back to.
func legacyMode(mode string) string {
	if mode == api.CopyModeTar {
		return api.CopyModeLegacyTar
	}
	return api.CopyModeLegacyBin
}

// invalidMode reports whether err is an old agent refusing a v1 mode: a
// 400 whose message says "invalid mode: <mode>".
func invalidMode(err error, mode string) bool {
	var e *api.Error
	return errors.As(err, &e) && e.StatusCode == http.StatusBadRequest &&
		strings.Contains(e.Message, "invalid mode: "+mode)
}

// CpToVM copies a local file, or with opts.Recursive a directory, to dst
// in a VM (POST /vm/{hostname}/cp, cp-v1). The daemon resolves dst like
// cp(1): into an existing directory, or as the new name. A directory is
// sent as a tar stream; a source ending in "/." sends its contents. An
// agent that predates cp-v1 is retried once in the legacy mode.
func (c *Client) CpToVM(ctx context.Context, hostname, src, dst string, opts CopyOptions) error {
	fi, err := os.Stat(src)
	if err != nil {
		return fmt.Errorf("copy %q: %w", src, err)
	}
	up := upload{dst: dst, opts: opts}
	if !copyContents(src) {
		up.name = filepath.Base(filepath.Clean(src))
	}
	switch {
	case fi.IsDir():
		if !opts.Recursive && !opts.Tar {
			return fmt.Errorf("%w: %q is a directory (copy it with recursive)", api.ErrInvalid, src)
		}
		entries, size, err := collectTree(src, opts.Exclude)
		if err != nil {
			return err
		}
		up.mode, up.sourceType, up.unpacked = api.CopyModeTar, api.CopySourceDirectory, size
		up.contents = copyContents(src)
		up.body = func() (io.ReadCloser, error) { return tarReader(entries), nil }
	case fi.Mode().IsRegular():
		if opts.Tar {
			return fmt.Errorf("%w: tar mode needs a directory, %q is a file", api.ErrInvalid, src)
		}
		up.mode, up.sourceType = api.CopyModeBinary, api.CopySourceFile
		up.body = func() (io.ReadCloser, error) { return os.Open(src) }
	default:
		return fmt.Errorf("%w: %q is neither a regular file nor a directory", api.ErrInvalid, src)
	}
	return c.upload(ctx, hostname, up)
}

// WriteFile writes data to a file in a VM (POST /vm/{hostname}/cp with
// only path, owner and permissions: binary, path as given).
func (c *Client) WriteFile(ctx context.Context, hostname, path string, data []byte, opts CopyOptions) error {
	q := url.Values{"path": {path}}
	opts.ownerQuery(q)
	return c.sendCopy(ctx, hostname, q, nil, func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	})
}

// upload is one cp-v1 upload.
type upload struct {
	dst, name, mode, sourceType string
	contents                    bool
	unpacked                    int64
	opts                        CopyOptions
	body                        func() (io.ReadCloser, error)
}

// query returns the upload's query string, v1 or legacy.
func (u upload) query(legacy bool) url.Values {
	q := url.Values{"path": {u.dst}}
	u.opts.ownerQuery(q)
	if legacy {
		q.Set("mode", legacyMode(u.mode))
		if u.mode == api.CopyModeBinary && strings.HasSuffix(u.dst, "/") {
			q.Set("path", u.dst+u.name) // old agents write to path as given
		}
	} else {
		q.Set("mode", u.mode)
		q.Set("copy_semantics", api.CopySemanticsV1)
		q.Set("source_name", u.name)
		q.Set("source_type", u.sourceType)
		if u.contents {
			q.Set("copy_contents", "true")
		}
	}
	if u.mode == api.CopyModeTar {
		for _, g := range u.opts.Exclude {
			q.Add("exclude", g)
		}
	}
	return q
}

func (u upload) header() http.Header {
	if u.mode == api.CopyModeTar {
		return http.Header{
			"Content-Type":         {"application/x-tar"},
			api.HeaderUnpackedSize: {strconv.FormatInt(u.unpacked, 10)},
		}
	}
	return http.Header{"Content-Type": {"application/octet-stream"}}
}

func (c *Client) upload(ctx context.Context, hostname string, u upload) error {
	err := c.sendCopy(ctx, hostname, u.query(false), u.header(), u.body)
	if invalidMode(err, u.mode) {
		err = c.sendCopy(ctx, hostname, u.query(true), u.header(), u.body)
	}
	return err
}

// sendCopy POSTs one body to /vm/{hostname}/cp, chunked.
func (c *Client) sendCopy(ctx context.Context, hostname string, q url.Values, hdr http.Header, open func() (io.ReadCloser, error)) error {
	p, err := escapePath("vm", hostname, "cp")
	if err != nil {
		return err
	}
	if hdr == nil {
		hdr = http.Header{"Content-Type": {"application/octet-stream"}}
	}
	body, err := open()
	if err != nil {
		return fmt.Errorf("open copy source: %w", err)
	}
	defer body.Close()
	resp, err := c.doHeader(ctx, http.MethodPost, p, q, struct{ io.Reader }{body}, hdr)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
	return resp.Body.Close()
}

// tarReader streams the tar of entries through a pipe. Closing the reader
// stops the writer.
func tarReader(entries []tarEntry) io.ReadCloser {
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(writeTar(pw, entries)) }()
	return pr
}
