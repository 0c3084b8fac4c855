package guest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/agent"
)

func TestFSOpError(t *testing.T) {
	tests := []struct {
		err       error
		wantClass error
		wantMsg   string
	}{
		{&fs.PathError{Op: "lstat", Path: "/x", Err: unix.ENOENT}, api.ErrNotFound, "not found: stat /x: no such file or directory"},
		{unix.EEXIST, api.ErrAlreadyExists, "already exists: stat /x: file exists"},
		{unix.ENOTEMPTY, api.ErrConflict, "conflict: stat /x: directory not empty (use recursive=true)"},
		{unix.ENOTDIR, api.ErrInvalid, "invalid argument: stat /x: not a directory"},
		{unix.EACCES, api.ErrForbidden, "forbidden: stat /x: permission denied"},
		{unix.EROFS, api.ErrForbidden, "forbidden: stat /x: read-only file system"},
		{unix.ENOSPC, api.ErrInsufficientStorage, "insufficient storage: stat /x: no space left on device"},
		{unix.EIO, nil, "stat /x: input/output error"},
	}
	for _, tt := range tests {
		got := fsOpError("stat", "/x", tt.err)
		if tt.wantClass != nil && !errors.Is(got, tt.wantClass) {
			t.Errorf("fsOpError(%v) = %v, want class %v", tt.err, got, tt.wantClass)
		}
		if tt.wantClass == nil && api.StatusOf(got) != http.StatusInternalServerError {
			t.Errorf("fsOpError(%v) = %v has a class, want none", tt.err, got)
		}
		if got.Error() != tt.wantMsg {
			t.Errorf("fsOpError(%v) = %q, want %q", tt.err, got, tt.wantMsg)
		}
	}
}

// fsCall sends method target (path and query) to the harness's agent,
// with body as JSON unless nil, and returns the status and the body. It
// acts as the test's own user (uid and gid are added unless target names
// a uid), which works with and without root; identity_linux_test.go tests
// the default user.
func fsCall(t *testing.T, h *harness, method, target string, body any) (int, []byte) {
	t.Helper()
	if u, err := url.Parse(target); err == nil && !u.Query().Has("uid") {
		target = u.Path + "?" + asMe(u.Query()).Encode()
	}
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, "http://agent"+target, r)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, target, err)
	}
	return resp.StatusCode, b
}

// fsTarget is route?param=value&... with the values escaped.
func fsTarget(route string, kv ...string) string {
	q := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		q.Add(kv[i], kv[i+1])
	}
	return route + "?" + q.Encode()
}

// checkFSError checks an error answer: its status, and that its message
// contains want.
func checkFSError(t *testing.T, what string, status int, body []byte, wantStatus int, want string) {
	t.Helper()
	var e api.ErrorResponse
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("%s: decode error body %q: %v", what, body, err)
	}
	if status != wantStatus || !strings.Contains(e.Error, want) {
		t.Errorf("%s = %d %q, want %d and a message containing %q", what, status, e.Error, wantStatus, want)
	}
}

// lstatInfo is what readdir and stat should say of p.
func lstatInfo(t *testing.T, p string) api.FSInfo {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fsInfo(filepath.Base(p), fi)
}

// fsTree makes a directory with a file, a subdirectory and a symlink.
func fsTree(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "b.txt"), []byte("hello"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "a-dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("b.txt", filepath.Join(dir, "c-link")); err != nil {
		t.Fatal(err)
	}
	if err := unix.Chmod(filepath.Join(dir, "b.txt"), 0o4750); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestFSReadDir(t *testing.T) {
	h := newHarness(t)
	dir := fsTree(t)
	status, body := fsCall(t, h, http.MethodGet, fsTarget(agent.PathFSReadDir, "path", dir), nil)
	if status != http.StatusOK {
		t.Fatalf("readdir %s = %d %s", dir, status, body)
	}
	var got []api.FSInfo
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("decode readdir: %v", err)
	}
	want := []api.FSInfo{
		lstatInfo(t, filepath.Join(dir, "a-dir")),
		lstatInfo(t, filepath.Join(dir, "b.txt")),
		lstatInfo(t, filepath.Join(dir, "c-link")),
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("readdir (-want +got):\n%s", diff)
	}
	types := []string{got[0].Type, got[1].Type, got[2].Type, got[1].Mode}
	if diff := cmp.Diff([]string{"directory", "file", "symlink", "4750"}, types); diff != "" {
		t.Errorf("types and mode (-want +got):\n%s", diff)
	}
	if !strings.Contains(string(body), `"mtime":"`) {
		t.Errorf("mtime is not an RFC3339 string: %s", body)
	}

	status, body = fsCall(t, h, http.MethodGet, fsTarget(agent.PathFSReadDir, "path", t.TempDir()), nil)
	if status != http.StatusOK || strings.TrimSpace(string(body)) != "[]" {
		t.Errorf("readdir of an empty directory = %d %s, want 200 []", status, body)
	}
}

func TestFSReadDirErrors(t *testing.T) {
	h := newHarness(t)
	dir := fsTree(t)
	tests := []struct {
		name, target string
		status       int
		msg          string
	}{
		{"missing", fsTarget(agent.PathFSReadDir, "path", dir+"/nope"), http.StatusNotFound, dir + "/nope"},
		{"a file", fsTarget(agent.PathFSReadDir, "path", dir+"/b.txt"), http.StatusBadRequest, "not a directory"},
		{"no path", agent.PathFSReadDir, http.StatusBadRequest, "path is required"},
	}
	for _, tt := range tests {
		status, body := fsCall(t, h, http.MethodGet, tt.target, nil)
		checkFSError(t, "readdir "+tt.name, status, body, tt.status, tt.msg)
	}
}

func TestFSStat(t *testing.T) {
	h := newHarness(t)
	dir := fsTree(t)
	for _, name := range []string{"a-dir", "b.txt", "c-link"} {
		p := filepath.Join(dir, name)
		status, body := fsCall(t, h, http.MethodGet, fsTarget(agent.PathFSStat, "path", p), nil)
		if status != http.StatusOK {
			t.Fatalf("stat %s = %d %s", p, status, body)
		}
		var got api.FSInfo
		if err := json.Unmarshal(body, &got); err != nil {
			t.Fatalf("decode stat: %v", err)
		}
		if diff := cmp.Diff(lstatInfo(t, p), got); diff != "" {
			t.Errorf("stat %s (-want +got):\n%s", p, diff)
		}
	}
	status, body := fsCall(t, h, http.MethodGet, fsTarget(agent.PathFSStat, "path", dir+"/nope"), nil)
	checkFSError(t, "stat of a missing path", status, body, http.StatusNotFound, dir+"/nope")
}

// fsMode is p's permission and special bits as stat(2) reports them.
func fsMode(t *testing.T, p string) (mode, uid uint32) {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Mode & 0o7777, st.Uid
}

func TestFSMkdir(t *testing.T) {
	h := newHarness(t)
	home := withSelf(t, h)
	base := t.TempDir()
	old := syscall.Umask(0o077) // the mode must not depend on the umask
	t.Cleanup(func() { syscall.Umask(old) })
	tests := []struct {
		name    string
		req     api.FSMkdirRequest
		want    string            // the directory that should exist
		modes   map[string]uint32 // the modes of what was created
		wantOut string            // the path of the answer
	}{
		{
			name:  "default mode",
			req:   api.FSMkdirRequest{Path: base + "/d1"},
			modes: map[string]uint32{base + "/d1": 0o755},
		},
		{
			name:  "mode without a leading zero",
			req:   api.FSMkdirRequest{Path: base + "/d2", Mode: "700"},
			modes: map[string]uint32{base + "/d2": 0o700},
		},
		{
			name:  "setgid",
			req:   api.FSMkdirRequest{Path: base + "/d3", Mode: "02775"},
			modes: map[string]uint32{base + "/d3": 0o2775},
		},
		{
			name:  "recursive: parents 0755, the directory its mode",
			req:   api.FSMkdirRequest{Path: base + "/p/q/r", Recursive: true, Mode: "0750"},
			modes: map[string]uint32{base + "/p": 0o755, base + "/p/q": 0o755, base + "/p/q/r": 0o750},
		},
		{
			name:  "recursive over an existing directory",
			req:   api.FSMkdirRequest{Path: base + "/d1", Recursive: true, Mode: "0700"},
			modes: map[string]uint32{base + "/d1": 0o755},
		},
		{
			name:  "home relative",
			req:   api.FSMkdirRequest{Path: "~/projects/x", Recursive: true},
			modes: map[string]uint32{home + "/projects": 0o755, home + "/projects/x": 0o755},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := fsCall(t, h, http.MethodPost, agent.PathFSMkdir, tt.req)
			if status != http.StatusOK {
				t.Fatalf("mkdir %+v = %d %s", tt.req, status, body)
			}
			for p, want := range tt.modes {
				mode, uid := fsMode(t, p)
				if mode != want {
					t.Errorf("mode of %s = %04o, want %04o", p, mode, want)
				}
				if int(uid) != os.Getuid() {
					t.Errorf("owner of %s = %d, want the user it acted as, %d", p, uid, os.Getuid())
				}
			}
		})
	}
}

func TestFSMkdirErrors(t *testing.T) {
	h := newHarness(t)
	dir := fsTree(t)
	tests := []struct {
		name   string
		body   any
		status int
		msg    string
	}{
		{"existing directory", api.FSMkdirRequest{Path: dir + "/a-dir"}, http.StatusConflict, "directory exists"},
		{"existing file", api.FSMkdirRequest{Path: dir + "/b.txt", Recursive: true}, http.StatusConflict, "not a directory"},
		{"missing parent", api.FSMkdirRequest{Path: dir + "/x/y"}, http.StatusNotFound, "parent " + dir + "/x does not exist"},
		{"parent is a file", api.FSMkdirRequest{Path: dir + "/b.txt/y", Recursive: true}, http.StatusBadRequest, "parent " + dir + "/b.txt is not a directory"},
		{"bad mode", api.FSMkdirRequest{Path: dir + "/m", Mode: "u+rwx"}, http.StatusBadRequest, `mode "u+rwx"`},
		{"no path", api.FSMkdirRequest{}, http.StatusBadRequest, "path is required"},
		{"not JSON", "[", http.StatusBadRequest, "decode mkdir request"},
	}
	for _, tt := range tests {
		status, body := fsCall(t, h, http.MethodPost, agent.PathFSMkdir, tt.body)
		checkFSError(t, "mkdir "+tt.name, status, body, tt.status, tt.msg)
	}
	if _, err := os.Stat(dir + "/x"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a failed mkdir left %s/x behind: %v", dir, err)
	}
}

func TestFSRemove(t *testing.T) {
	h := newHarness(t)
	dir := fsTree(t)
	if err := os.MkdirAll(dir+"/full/sub", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(dir+"/empty", 0o755); err != nil {
		t.Fatal(err)
	}
	remove := func(p, recursive string) (int, []byte) {
		return fsCall(t, h, http.MethodDelete, fsTarget(agent.PathFSRemove, "path", p, "recursive", recursive), nil)
	}

	status, body := remove(dir+"/full", "false")
	checkFSError(t, "remove of a full directory", status, body, http.StatusConflict, "directory not empty")
	status, body = remove(dir+"/nope", "false")
	checkFSError(t, "remove of a missing path", status, body, http.StatusNotFound, dir+"/nope")
	status, body = remove("/", "true")
	checkFSError(t, "remove of /", status, body, http.StatusBadRequest, "refusing to remove /")
	status, body = remove(dir+"/b.txt", "perhaps")
	checkFSError(t, "remove with a bad recursive", status, body, http.StatusBadRequest, "recursive")

	for _, tt := range []struct{ path, recursive string }{
		{dir + "/c-link", "false"}, // the link, not b.txt
		{dir + "/empty", "false"},
		{dir + "/full", "true"},
		{dir + "/a-dir", ""},
	} {
		if status, body := remove(tt.path, tt.recursive); status != http.StatusOK {
			t.Errorf("remove %s recursive=%q = %d %s, want 200", tt.path, tt.recursive, status, body)
		}
		if _, err := os.Lstat(tt.path); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("after remove, lstat %s = %v, want not exist", tt.path, err)
		}
	}
	if _, err := os.Stat(dir + "/b.txt"); err != nil {
		t.Errorf("removing the symlink touched its target: %v", err)
	}
}
