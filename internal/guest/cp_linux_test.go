package guest

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/agent"
)

// cpResponse is an agent answer to a copy request, read whole.
type cpResponse struct {
	status int
	header http.Header
	body   []byte
}

// cp sends one copy request straight to the agent's /v1/cp. A body that
// is not a *bytes.Reader goes chunked, as the SDK sends uploads.
func (h *harness) cp(method string, q url.Values, hdr http.Header, body io.Reader) cpResponse {
	h.t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), method, "http://agent"+agent.PathCopy+"?"+q.Encode(), body)
	if err != nil {
		h.t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := h.client.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, q.Encode(), err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatalf("%s %s: read answer: %v", method, q.Encode(), err)
	}
	return cpResponse{status: resp.StatusCode, header: resp.Header, body: b}
}

// asMe sets uid and gid to the test's own, so uploads work with and
// without root.
func asMe(q url.Values) url.Values {
	q.Set("uid", strconv.Itoa(os.Getuid()))
	q.Set("gid", strconv.Itoa(os.Getgid()))
	return q
}

// wantStatus fails unless r has status.
func (r cpResponse) wantStatus(t *testing.T, status int) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status = %d, want %d; body %s", r.status, status, r.body)
	}
}

// tarFile is one entry of a tar built by a test.
type tarFile struct {
	name  string
	typ   byte // tar.TypeReg when zero
	body  string
	mode  int64
	mtime time.Time
	link  string
	size  int64 // declared size, when not len(body)
}

// makeTar builds a tar stream. An entry that declares more than its body
// ends the stream there, unfinished.
func makeTar(t *testing.T, files ...tarFile) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: f.name, Typeflag: f.typ, Mode: f.mode, ModTime: f.mtime, Linkname: f.link, Size: int64(len(f.body))}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if h.Typeflag != tar.TypeReg {
			h.Size = 0
		}
		if f.size != 0 {
			h.Size = f.size
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, f.body); err != nil {
			t.Fatal(err)
		}
		if f.size > int64(len(f.body)) {
			return buf.Bytes()
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// readTar decodes a tar into name → entry, contents in body.
func readTar(t *testing.T, b []byte) map[string]tarFile {
	t.Helper()
	out := map[string]tarFile{}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("read tar: %v", err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out[h.Name] = tarFile{name: h.Name, typ: h.Typeflag, body: string(body), mode: h.Mode, mtime: h.ModTime.UTC()}
	}
}

func tarHeader(size int64) http.Header {
	return http.Header{"Content-Type": {"application/x-tar"}, api.HeaderUnpackedSize: {strconv.FormatInt(size, 10)}}
}

func TestCopyFileRoundTrip(t *testing.T) {
	h := newHarness(t)
	dir := t.TempDir()
	data := make([]byte, 3<<20+17)
	rand.Read(data)

	dst := filepath.Join(dir, "new", "parents", "blob.bin")
	q := asMe(url.Values{"path": {dst}, "mode": {api.CopyModeBinary}, "copy_semantics": {"cp-v1"},
		"source_name": {"blob.bin"}, "source_type": {"file"}})
	r := h.cp(http.MethodPost, q, http.Header{"Content-Type": {"application/octet-stream"}}, struct{ io.Reader }{bytes.NewReader(data)})
	r.wantStatus(t, http.StatusOK)
	var res copyResult
	if err := json.Unmarshal(r.body, &res); err != nil || res.Path != dst || res.Bytes != int64(len(data)) {
		t.Errorf("upload answer = %s (%v), want path %s and %d bytes", r.body, err, dst, len(data))
	}
	fi, err := os.Stat(dst)
	if err != nil || fi.Mode() != 0o644 {
		t.Fatalf("stat %s = %v, %v; want mode 0644", dst, fi, err)
	}
	if sub, _ := os.Stat(filepath.Join(dir, "new")); sub == nil || !sub.IsDir() {
		t.Errorf("parent directories were not created")
	}

	r = h.cp(http.MethodGet, asMe(url.Values{"path": {dst}, "mode": {api.CopyModeBinary}, "copy_semantics": {"cp-v1"}}), nil, nil)
	r.wantStatus(t, http.StatusOK)
	if sha256.Sum256(r.body) != sha256.Sum256(data) {
		t.Errorf("downloaded %d bytes differ from the %d uploaded", len(r.body), len(data))
	}
	wantHeaders := map[string]string{
		"Content-Type":             "application/octet-stream",
		api.HeaderSourceType:       api.CopySourceFile,
		api.HeaderSourceNameBase64: base64.RawURLEncoding.EncodeToString([]byte("blob.bin")),
		api.HeaderFileMode:         "0644",
	}
	for k, v := range wantHeaders {
		if got := r.header.Get(k); got != v {
			t.Errorf("download header %s = %q, want %q", k, got, v)
		}
	}
	if got := cpTemps(t, dir); len(got) > 0 {
		t.Errorf("temporary files left: %q", got)
	}
}

// cpTemps lists the copy temporary files under dir.
func cpTemps(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), ".slicer-cp-") {
			out = append(out, p)
		}
		return nil
	})
	return out
}

func TestCopyWriteFileAndPermissions(t *testing.T) {
	h := newHarness(t)
	dir := t.TempDir()
	p := filepath.Join(dir, "script.sh")

	// WriteFile sends only path (legacy binary) and permissions.
	r := h.cp(http.MethodPost, asMe(url.Values{"path": {p}, "permissions": {"755"}}), nil, bytes.NewReader([]byte("#!/bin/sh\n")))
	r.wantStatus(t, http.StatusOK)
	if fi, err := os.Stat(p); err != nil || fi.Mode() != 0o755 {
		t.Fatalf("stat = %v, %v; want 0755", fi, err)
	}
	// Overwriting keeps the mode, as cp(1) does.
	r = h.cp(http.MethodPost, asMe(url.Values{"path": {p}}), nil, bytes.NewReader([]byte("echo hi\n")))
	r.wantStatus(t, http.StatusOK)
	if b, _ := os.ReadFile(p); string(b) != "echo hi\n" {
		t.Errorf("content = %q", b)
	}
	if fi, _ := os.Stat(p); fi.Mode() != 0o755 {
		t.Errorf("mode after overwrite = %v, want 0755", fi.Mode())
	}
	// ReadFile sends only path: bytes and mode, no cp-v1 metadata.
	r = h.cp(http.MethodGet, asMe(url.Values{"path": {p}}), nil, nil)
	r.wantStatus(t, http.StatusOK)
	if string(r.body) != "echo hi\n" || r.header.Get(api.HeaderFileMode) != "0755" || r.header.Get(api.HeaderSourceType) != "" {
		t.Errorf("ReadFile answer: body %q, headers %v", r.body, r.header)
	}
	// Legacy binary onto a directory is refused.
	r = h.cp(http.MethodPost, asMe(url.Values{"path": {dir}}), nil, bytes.NewReader(nil))
	r.wantStatus(t, http.StatusBadRequest)
}

// TestCopyUploadResolution runs the cp-v1 destination table for real.
func TestCopyUploadResolution(t *testing.T) {
	h := newHarness(t)
	tarBody := makeTar(t, tarFile{name: "a.txt", body: "A"})
	tests := []struct {
		name   string
		tar    bool
		path   string // relative to the test directory; a trailing slash is kept
		extra  url.Values
		want   string // file written, relative; empty: refused with 400
		legacy bool
	}{
		{name: "file into existing dir", path: "dir", want: "dir/src.txt"},
		{name: "file into existing dir, slash", path: "dir/", want: "dir/src.txt"},
		{name: "file to new name", path: "dir/renamed.txt", want: "dir/renamed.txt"},
		{name: "file with new parents", path: "new/deep/f.txt", want: "new/deep/f.txt"},
		{name: "file over file", path: "file", want: "file"},
		{name: "file, slash on missing dir", path: "missing/"},
		{name: "file, slash on a file", path: "file/"},
		{name: "dir into existing dir", tar: true, path: "dir", want: "dir/src/a.txt"},
		{name: "dir contents into existing dir", tar: true, path: "dir", extra: url.Values{"copy_contents": {"true"}}, want: "dir/a.txt"},
		{name: "dir to new dir", tar: true, path: "fresh/tree", want: "fresh/tree/a.txt"},
		{name: "dir onto file", tar: true, path: "file"},
		{name: "legacy file", legacy: true, path: "legacy.bin", want: "legacy.bin"},
		{name: "legacy tar", legacy: true, tar: true, path: "dir", want: "dir/a.txt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := t.TempDir()
			os.Mkdir(filepath.Join(base, "dir"), 0o755)
			os.WriteFile(filepath.Join(base, "file"), []byte("old"), 0o644)
			p := filepath.Join(base, tt.path)
			if strings.HasSuffix(tt.path, "/") {
				p += "/"
			}
			q := asMe(url.Values{"path": {p}})
			hdr := http.Header{"Content-Type": {"application/octet-stream"}}
			body, content := []byte("payload"), "payload"
			switch {
			case tt.tar && tt.legacy:
				q.Set("mode", "tar")
			case tt.legacy:
				q.Set("mode", "binary")
			case tt.tar:
				q.Set("mode", api.CopyModeTar)
				q.Set("copy_semantics", "cp-v1")
				q.Set("source_name", "src")
				q.Set("source_type", "directory")
			default:
				q.Set("mode", api.CopyModeBinary)
				q.Set("copy_semantics", "cp-v1")
				q.Set("source_name", "src.txt")
			}
			if tt.tar {
				hdr, body, content = tarHeader(1), tarBody, "A"
			}
			for k, v := range tt.extra {
				q[k] = v
			}
			r := h.cp(http.MethodPost, q, hdr, bytes.NewReader(body))
			if tt.want == "" {
				r.wantStatus(t, http.StatusBadRequest)
				return
			}
			r.wantStatus(t, http.StatusOK)
			if b, err := os.ReadFile(filepath.Join(base, tt.want)); err != nil || string(b) != content {
				t.Errorf("%s = %q, %v; want %q", tt.want, b, err, content)
			}
		})
	}
}

// cpTree is a directory layout for round trips: name → content, "/" suffix
// for directories.
var cpTree = []tarFile{
	{name: "bin/", typ: tar.TypeDir, mode: 0o750},
	{name: "bin/run.sh", body: "#!/bin/sh\necho hi\n", mode: 0o755},
	{name: "docs/", typ: tar.TypeDir, mode: 0o755},
	{name: "docs/readme.md", body: "# hi\n", mode: 0o644},
	{name: "docs/secret.txt", body: "s3cret", mode: 0o600},
	{name: "empty/", typ: tar.TypeDir, mode: 0o700},
	{name: "logs/", typ: tar.TypeDir, mode: 0o755},
	{name: "logs/a.log", body: "log line\n", mode: 0o644},
	{name: "top.log", body: "top", mode: 0o644},
	{name: "my file (1).txt", body: "spaces", mode: 0o640},
}

func TestCopyTreeRoundTrip(t *testing.T) {
	h := newHarness(t)
	mtime := time.Date(2021, 3, 4, 5, 6, 7, 0, time.UTC)
	var entries []tarFile
	var size int64
	for i, f := range cpTree {
		f.mtime = mtime.Add(time.Duration(i) * time.Hour)
		size += int64(len(f.body))
		entries = append(entries, f)
	}
	base := t.TempDir()
	q := asMe(url.Values{"path": {base}, "mode": {api.CopyModeTar}, "copy_semantics": {"cp-v1"},
		"source_name": {"proj"}, "source_type": {"directory"}})
	h.cp(http.MethodPost, q, tarHeader(size), bytes.NewReader(makeTar(t, entries...))).wantStatus(t, http.StatusOK)

	dst := filepath.Join(base, "proj")
	for _, f := range entries {
		p := filepath.Join(dst, strings.TrimSuffix(f.name, "/"))
		fi, err := os.Stat(p)
		if err != nil {
			t.Errorf("stat %s: %v", f.name, err)
			continue
		}
		if fi.Mode().Perm() != fs.FileMode(f.mode) || !fi.ModTime().Equal(f.mtime) {
			t.Errorf("%s: mode %v mtime %v, want %v %v", f.name, fi.Mode().Perm(), fi.ModTime().UTC(), fs.FileMode(f.mode), f.mtime)
		}
	}

	// Download with the cp-v1 recursive mode, excluding *.log (and so logs/).
	r := h.cp(http.MethodGet, asMe(url.Values{"path": {dst}, "mode": {api.CopyModeRecursive}, "copy_semantics": {"cp-v1"},
		"exclude": {"*.log", "logs"}}), nil, nil)
	r.wantStatus(t, http.StatusOK)
	if r.header.Get("Content-Type") != "application/x-tar" || r.header.Get(api.HeaderSourceType) != api.CopySourceDirectory ||
		r.header.Get(api.HeaderSourceNameBase64) != base64.RawURLEncoding.EncodeToString([]byte("proj")) {
		t.Errorf("download headers = %v", r.header)
	}
	got := readTar(t, r.body)
	want := map[string]tarFile{}
	for _, f := range entries {
		if strings.HasPrefix(f.name, "logs") || strings.HasSuffix(f.name, ".log") {
			continue
		}
		if f.typ == 0 {
			f.typ = tar.TypeReg
		}
		want[f.name] = tarFile{name: f.name, typ: f.typ, body: f.body, mode: f.mode, mtime: f.mtime}
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(tarFile{})); diff != "" {
		t.Errorf("downloaded tar (-want +got):\n%s", diff)
	}
}

func TestCopyExcludeOnUpload(t *testing.T) {
	h := newHarness(t)
	base := t.TempDir()
	q := asMe(url.Values{"path": {base}, "mode": {"tar"}, "exclude": {"*.log", "logs/"}})
	h.cp(http.MethodPost, q, tarHeader(1000), bytes.NewReader(makeTar(t, cpTree...))).wantStatus(t, http.StatusOK)
	for _, name := range []string{"top.log", "logs", "logs/a.log"} {
		if _, err := os.Lstat(filepath.Join(base, name)); err == nil {
			t.Errorf("%s was extracted despite the exclude", name)
		}
	}
	if _, err := os.Stat(filepath.Join(base, "docs", "readme.md")); err != nil {
		t.Errorf("docs/readme.md: %v", err)
	}
}

func TestCopyDownloadErrors(t *testing.T) {
	h := newHarness(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "f.txt")
	os.WriteFile(file, []byte("x"), 0o600)
	tests := []struct {
		name   string
		q      url.Values
		status int
		errHas string
	}{
		{"missing", url.Values{"path": {filepath.Join(dir, "nope")}}, http.StatusNotFound, "does not exist"},
		{"binary of a directory", url.Values{"path": {dir}, "mode": {api.CopyModeBinary}}, http.StatusBadRequest, "must specify a file not a directory"},
		{"legacy binary of a directory", url.Values{"path": {dir}, "mode": {"binary"}}, http.StatusBadRequest, "must specify a file not a directory"},
		{"tar of a file", url.Values{"path": {file}, "mode": {api.CopyModeTar}}, http.StatusBadRequest, "is a file"},
		{"unknown mode", url.Values{"path": {file}, "mode": {"cp-v2-binary"}}, http.StatusBadRequest, `"cp-v2-binary"`},
		{"no path", url.Values{"mode": {api.CopyModeBinary}}, http.StatusBadRequest, "path"},
	}
	for _, tt := range tests {
		r := h.cp(http.MethodGet, asMe(tt.q), nil, nil)
		var e api.ErrorResponse
		_ = json.Unmarshal(r.body, &e)
		if r.status != tt.status || !strings.Contains(e.Error, tt.errHas) {
			t.Errorf("%s: %d %s, want %d containing %q", tt.name, r.status, r.body, tt.status, tt.errHas)
		}
	}
	r := h.cp(http.MethodGet, asMe(url.Values{"path": {file}, "mode": {api.CopyModeRecursive}, "copy_semantics": {"cp-v1"}}), nil, nil)
	r.wantStatus(t, http.StatusOK)
	if string(r.body) != "x" || r.header.Get(api.HeaderSourceType) != api.CopySourceFile || r.header.Get(api.HeaderFileMode) != "0600" {
		t.Errorf("recursive of a file: %q %v", r.body, r.header)
	}
	r = h.cp(http.MethodGet, asMe(url.Values{"path": {dir + "/."}, "mode": {api.CopyModeTar}}), nil, nil)
	r.wantStatus(t, http.StatusOK)
	if r.header.Get(api.HeaderSourceNameBase64) != "" || r.header.Get(api.HeaderSourceType) != api.CopySourceDirectory {
		t.Errorf("contents download: want an empty name, got headers %v", r.header)
	}
	if _, ok := r.header[http.CanonicalHeaderKey(api.HeaderSourceNameBase64)]; !ok {
		t.Errorf("contents download has no %s header", api.HeaderSourceNameBase64)
	}
	if got := readTar(t, r.body); len(got) != 1 || got["f.txt"].body != "x" {
		t.Errorf("contents tar = %v", got)
	}
	// A symbolic link to a directory sends the directory; links inside a
	// tree are left out.
	link := filepath.Join(t.TempDir(), "link")
	os.Symlink(dir, link)
	os.Symlink(file, filepath.Join(dir, "inner-link"))
	r = h.cp(http.MethodGet, asMe(url.Values{"path": {link}, "mode": {api.CopyModeTar}}), nil, nil)
	r.wantStatus(t, http.StatusOK)
	if got := readTar(t, r.body); len(got) != 1 || got["f.txt"].body != "x" {
		t.Errorf("tar through a link = %v, want only f.txt", got)
	}
}
