package guest

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/openslicer/openslicer/api"
)

func TestCopyInsufficientStorage(t *testing.T) {
	h := newHarness(t)
	base := t.TempDir()
	dst := filepath.Join(base, "big")
	q := asMe(url.Values{"path": {dst}, "mode": {api.CopyModeTar}, "copy_semantics": {"cp-v1"}, "source_name": {"big"}})
	r := h.cp(http.MethodPost, q, tarHeader(1<<62), bytes.NewReader(makeTar(t, tarFile{name: "a", body: "a"})))
	r.wantStatus(t, http.StatusInsufficientStorage)
	if !strings.Contains(string(r.body), strconv.FormatInt(1<<62, 10)) {
		t.Errorf("error %s does not name the size", r.body)
	}
	if _, err := os.Lstat(dst); err == nil {
		t.Errorf("%s was created by a copy refused for space", dst)
	}

	// A single file declares its size through Content-Length.
	s := h.srv
	u := upload{rawPath: filepath.Join(base, "f"), uid: u32(uint32(os.Getuid())), gid: u32(uint32(os.Getgid())), size: 1 << 62}
	_, err := s.receive(context.Background(), u, strings.NewReader("tiny"))
	if api.StatusOf(err) != http.StatusInsufficientStorage {
		t.Errorf("receive of a too big file: %v, want 507", err)
	}
}

func TestCopyHomePaths(t *testing.T) {
	h := newHarness(t)
	home := t.TempDir()
	passwd := fmt.Sprintf("me:x:%d:%d::%s:/bin/sh\n", os.Getuid(), os.Getgid(), home)
	if err := os.WriteFile(filepath.Join(h.srv.etcDir, "passwd"), []byte(passwd), 0o644); err != nil {
		t.Fatal(err)
	}
	q := asMe(url.Values{"path": {"~/sub/"}, "mode": {api.CopyModeBinary}, "copy_semantics": {"cp-v1"}, "source_name": {"n.txt"}})
	h.cp(http.MethodPost, q, nil, bytes.NewReader([]byte("home"))).wantStatus(t, http.StatusBadRequest) // ~/sub/ does not exist
	os.Mkdir(filepath.Join(home, "sub"), 0o755)
	h.cp(http.MethodPost, q, nil, bytes.NewReader([]byte("home"))).wantStatus(t, http.StatusOK)
	if b, err := os.ReadFile(filepath.Join(home, "sub", "n.txt")); err != nil || string(b) != "home" {
		t.Fatalf("~/sub/n.txt = %q, %v", b, err)
	}
	r := h.cp(http.MethodGet, asMe(url.Values{"path": {"~/sub/n.txt"}}), nil, nil)
	r.wantStatus(t, http.StatusOK)
	if string(r.body) != "home" {
		t.Errorf("download of ~/sub/n.txt = %q", r.body)
	}
}

func TestCopyOwnership(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("acting as other users needs root")
	}
	h := newHarness(t)
	home := sharedDir(t, 1000, 1001, 0o755)
	passwd := fmt.Sprintf("root:x:0:0::/root:/bin/sh\nubuntu:x:1000:1001::%s:/bin/sh\n", home)
	os.WriteFile(filepath.Join(h.srv.etcDir, "passwd"), []byte(passwd), 0o644)

	// No uid: the image's uid-1000 user, ~ its home, new parents its own.
	q := url.Values{"path": {"~/a/b/"}, "mode": {api.CopyModeTar}, "copy_semantics": {"cp-v1"}, "copy_contents": {"true"}}
	h.cp(http.MethodPost, q, tarHeader(1), bytes.NewReader(makeTar(t, tarFile{name: "d/", typ: tar.TypeDir, mode: 0o755},
		tarFile{name: "d/f", body: "f"}))).wantStatus(t, http.StatusOK)
	for _, p := range []string{"a", "a/b", "a/b/d", "a/b/d/f"} {
		checkOwner(t, filepath.Join(home, p), 1000, 1001)
	}
	// uid=0 is root.
	q = url.Values{"path": {filepath.Join(home, "root.txt")}, "uid": {"0"}, "gid": {"0"}}
	h.cp(http.MethodPost, q, nil, bytes.NewReader([]byte("r"))).wantStatus(t, http.StatusOK)
	checkOwner(t, filepath.Join(home, "root.txt"), 0, 0)
	// An explicit uid and gid act as that user: it may write into a
	// sticky world-writable directory, and what it writes is its own...
	shared := sharedDir(t, 0, 0, 0o777|fs.ModeSticky)
	q = url.Values{"path": {filepath.Join(shared, "x.txt")}, "uid": {"1234"}, "gid": {"5678"}}
	h.cp(http.MethodPost, q, nil, bytes.NewReader([]byte("x"))).wantStatus(t, http.StatusOK)
	checkOwner(t, filepath.Join(shared, "x.txt"), 1234, 5678)
	// ... but not into the home of another user.
	q = url.Values{"path": {filepath.Join(home, "x.txt")}, "uid": {"1234"}, "gid": {"5678"}}
	h.cp(http.MethodPost, q, nil, bytes.NewReader([]byte("x"))).wantStatus(t, http.StatusForbidden)
}

// checkOwner fails unless p belongs to uid and gid.
func checkOwner(t *testing.T, p string, uid, gid int) {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Errorf("stat %s: %v", p, err)
		return
	}
	st := fi.Sys().(*syscall.Stat_t)
	if int(st.Uid) != uid || int(st.Gid) != gid {
		t.Errorf("%s belongs to %d:%d, want %d:%d", p, st.Uid, st.Gid, uid, gid)
	}
}

// TestCopyDiskFullMidWrite fills a small tmpfs: the copy fails with 507
// and leaves no temporary file behind.
func TestCopyDiskFullMidWrite(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root")
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"); err != nil {
		t.Skipf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	h := newHarness(t)
	big := bytes.Repeat([]byte("z"), 3<<20)

	q := url.Values{"path": {filepath.Join(dir, "f")}, "mode": {api.CopyModeBinary}, "uid": {"0"}, "gid": {"0"}}
	r := h.cp(http.MethodPost, q, nil, struct{ io.Reader }{bytes.NewReader(big)}) // chunked: no size known
	r.wantStatus(t, http.StatusInsufficientStorage)

	q = url.Values{"path": {filepath.Join(dir, "t")}, "mode": {api.CopyModeTar}, "uid": {"0"}, "gid": {"0"}}
	r = h.cp(http.MethodPost, q, http.Header{"Content-Type": {"application/x-tar"}},
		bytes.NewReader(makeTar(t, tarFile{name: "big", body: string(big)})))
	r.wantStatus(t, http.StatusInsufficientStorage)
	if got := cpTemps(t, dir); len(got) > 0 {
		t.Errorf("temporary files left: %q", got)
	}
	if _, err := os.Stat(filepath.Join(dir, "f")); err == nil {
		t.Errorf("a partial file was put in place")
	}
}
