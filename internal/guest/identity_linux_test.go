package guest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/agent"
)

// withSelf makes the test's own user an account of the image, with a home
// of its own, and returns the home.
func withSelf(t *testing.T, h *harness) string {
	t.Helper()
	home := filepath.Join(t.TempDir(), "home", "me")
	must(t, os.MkdirAll(home, 0o755))
	passwd := fmt.Sprintf("me:x:%d:%d::%s:/bin/sh\n", os.Getuid(), os.Getgid(), home)
	must(t, os.WriteFile(filepath.Join(h.srv.etcDir, "passwd"), []byte(passwd), 0o644))
	return home
}

// sharedDir returns a new directory with mode, owned by uid and gid, that
// other users can reach (the test's temporary root is 0700).
func sharedDir(t *testing.T, uid, gid int, mode fs.FileMode) string {
	t.Helper()
	dir := t.TempDir()
	must(t, os.Chmod(filepath.Dir(dir), 0o755))
	must(t, os.Chown(dir, uid, gid))
	must(t, os.Chmod(dir, mode))
	return dir
}

// agentCall sends one request to the harness's agent as it is (no uid is
// added) and returns the status and body.
func agentCall(t *testing.T, h *harness, method, target string, hdr http.Header, body io.Reader) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), method, "http://agent"+target, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := h.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read answer: %v", method, target, err)
	}
	return resp.StatusCode, b
}

// TestThreadIdentity switches a locked thread to a user's file-system
// identity and back, and checks that the kernel then refuses what the
// user may not do while another thread keeps root's rights.
func TestThreadIdentity(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("switching identities needs root")
	}
	private := t.TempDir() // root, 0700
	shared := sharedDir(t, 0, 0, 0o777|fs.ModeSticky)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	own, err := threadIdentity()
	must(t, err)
	if own.uid != 0 {
		t.Fatalf("the test thread has fsuid %d, want 0", own.uid)
	}
	user := fsIdentity{uid: 1000, gid: 1001, groups: []int{1001, 27}}
	must(t, setThreadIdentity(user))
	_, createErr := os.Create(filepath.Join(private, "as-user"))
	must(t, os.WriteFile(filepath.Join(shared, "mine"), nil, 0o644))
	// Another thread, at the same time, is still root.
	other := make(chan error)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		other <- os.WriteFile(filepath.Join(private, "as-root"), nil, 0o644)
	}()
	otherErr := <-other
	must(t, setThreadIdentity(own))
	if got, err := threadIdentity(); err != nil || !cmp.Equal(got, own, cmp.AllowUnexported(fsIdentity{})) {
		t.Errorf("identity after restoring = %+v, %v; want %+v", got, err, own)
	}

	if !errors.Is(createErr, fs.ErrPermission) {
		t.Errorf("create in root's 0700 directory as uid 1000: %v, want permission denied", createErr)
	}
	checkOwner(t, filepath.Join(shared, "mine"), 1000, 1001)
	if otherErr != nil {
		t.Errorf("another thread lost root's rights while this one acted as uid 1000: %v", otherErr)
	}
	if _, err := os.Create(filepath.Join(private, "root-again")); err != nil {
		t.Errorf("after restoring, this thread cannot write as root: %v", err)
	}
}

func TestActorDo(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("switching identities needs root")
	}
	private := t.TempDir()
	act := actor{account: account{UID: 1000, GID: 1000}, assume: true}
	err := act.do(func() error {
		_, err := os.Create(filepath.Join(private, "f"))
		return err
	})
	if !errors.Is(err, fs.ErrPermission) {
		t.Errorf("do as uid 1000 in root's private directory: %v, want permission denied", err)
	}
	// A panic reaches the caller, as it would without do.
	func() {
		defer func() {
			if v := recover(); v != http.ErrAbortHandler {
				t.Errorf("recovered %v, want http.ErrAbortHandler", v)
			}
		}()
		_ = act.do(func() error { panic(http.ErrAbortHandler) })
	}()
	// The threads do used are root again: many goroutines, each on a
	// thread of the pool, can all write as root.
	for range 20 {
		_ = act.do(func() error { return nil })
	}
	errs := make(chan error, 20)
	for i := range 20 {
		go func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			errs <- os.WriteFile(filepath.Join(private, fmt.Sprint("root-", i)), nil, 0o644)
		}()
	}
	for range 20 {
		if err := <-errs; err != nil {
			t.Errorf("a pooled thread is not root after do: %v", err)
		}
	}
}

// identityTree is a guest-like tree for the default-user tests: an etc
// and a private directory of root's, a world-writable pub, and the
// default user's home, all under one base.
type identityTree struct {
	base, etc, private, pub, home string
}

func newIdentityTree(t *testing.T, h *harness) identityTree {
	t.Helper()
	base := sharedDir(t, 0, 0, 0o755)
	tr := identityTree{
		base:    base,
		etc:     filepath.Join(base, "etc"),
		private: filepath.Join(base, "private"),
		pub:     filepath.Join(base, "pub"),
		home:    filepath.Join(base, "home"),
	}
	must(t, os.Mkdir(tr.etc, 0o755))
	must(t, os.Mkdir(tr.private, 0o700))
	must(t, os.Mkdir(tr.pub, 0o777))
	must(t, os.Chmod(tr.pub, 0o777|fs.ModeSticky))
	must(t, os.Mkdir(tr.home, 0o755))
	must(t, os.Chown(tr.home, 1000, 1000))
	must(t, os.WriteFile(filepath.Join(tr.etc, "passwd"), []byte("root:x:0:0\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(tr.etc, "shadow"), []byte("root:!:\n"), 0o640))
	must(t, os.WriteFile(filepath.Join(tr.private, "secret"), []byte("s"), 0o600))
	passwd := fmt.Sprintf("root:x:0:0::/root:/bin/sh\nslicer:x:1000:1000::%s:/bin/sh\n", tr.home)
	must(t, os.WriteFile(filepath.Join(h.srv.etcDir, "passwd"), []byte(passwd), 0o644))
	return tr
}

// TestGuestOpsActAsDefaultUser checks that copies, file-system requests
// and watches without a uid act with the default user's permissions,
// with uid=0 as root, and with another uid as that user.
func TestGuestOpsActAsDefaultUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("acting as other users needs root")
	}
	h := newHarness(t)
	tr := newIdentityTree(t, h)
	before := treeSnapshot(t, tr.etc)

	upload := func(q url.Values, body string) (int, []byte) {
		return agentCall(t, h, http.MethodPost, agent.PathCopy+"?"+q.Encode(), nil, strings.NewReader(body))
	}
	tests := []struct {
		name   string
		status int
		do     func() (int, []byte)
	}{
		{"cp over root's file", http.StatusForbidden, func() (int, []byte) {
			return upload(url.Values{"path": {filepath.Join(tr.etc, "passwd")}}, "pwned")
		}},
		{"cp into root's directory", http.StatusForbidden, func() (int, []byte) {
			return upload(url.Values{"path": {filepath.Join(tr.etc, "new")}}, "x")
		}},
		{"cp through .. out of the home into root's directory", http.StatusForbidden, func() (int, []byte) {
			return upload(url.Values{"path": {"~/../etc/passwd"}}, "pwned")
		}},
		{"tar into root's directory", http.StatusForbidden, func() (int, []byte) {
			q := url.Values{"path": {tr.etc}, "mode": {api.CopyModeTar}, "copy_semantics": {"cp-v1"}, "copy_contents": {"true"}}
			return agentCall(t, h, http.MethodPost, agent.PathCopy+"?"+q.Encode(), tarHeader(1), bytes.NewReader(makeTar(t, tarFile{name: "x", body: "x"})))
		}},
		{"download of a private file", http.StatusForbidden, func() (int, []byte) {
			return agentCall(t, h, http.MethodGet, agent.PathCopy+"?"+url.Values{"path": {filepath.Join(tr.private, "secret")}}.Encode(), nil, nil)
		}},
		{"download of a private tree", http.StatusForbidden, func() (int, []byte) {
			q := url.Values{"path": {tr.private}, "mode": {api.CopyModeTar}}
			return agentCall(t, h, http.MethodGet, agent.PathCopy+"?"+q.Encode(), nil, nil)
		}},
		{"remove of root's file", http.StatusForbidden, func() (int, []byte) {
			return agentCall(t, h, http.MethodDelete, fsTarget(agent.PathFSRemove, "path", filepath.Join(tr.etc, "shadow")), nil, nil)
		}},
		{"recursive remove of root's directory", http.StatusForbidden, func() (int, []byte) {
			return agentCall(t, h, http.MethodDelete, fsTarget(agent.PathFSRemove, "path", tr.etc, "recursive", "true"), nil, nil)
		}},
		{"mkdir in root's directory", http.StatusForbidden, func() (int, []byte) {
			return agentCall(t, h, http.MethodPost, agent.PathFSMkdir, nil, strings.NewReader(`{"path":"`+tr.etc+`/d"}`))
		}},
		{"readdir of a private directory", http.StatusForbidden, func() (int, []byte) {
			return agentCall(t, h, http.MethodGet, fsTarget(agent.PathFSReadDir, "path", tr.private), nil, nil)
		}},
		{"stat in a private directory", http.StatusForbidden, func() (int, []byte) {
			return agentCall(t, h, http.MethodGet, fsTarget(agent.PathFSStat, "path", filepath.Join(tr.private, "secret")), nil, nil)
		}},
		{"watch of a private directory", http.StatusForbidden, func() (int, []byte) {
			return agentCall(t, h, http.MethodGet, fsTarget(agent.PathFSWatch, "paths", tr.private, "timeout", "1s"), nil, nil)
		}},
		{"explicit uid 1000 is the same user", http.StatusForbidden, func() (int, []byte) {
			return agentCall(t, h, http.MethodDelete, fsTarget(agent.PathFSRemove, "path", filepath.Join(tr.etc, "shadow"), "uid", "1000"), nil, nil)
		}},
		{"another uid cannot write in the default user's home", http.StatusForbidden, func() (int, []byte) {
			return upload(url.Values{"path": {filepath.Join(tr.home, "x")}, "uid": {"1234"}}, "x")
		}},
		{"cp into the home", http.StatusOK, func() (int, []byte) {
			return upload(url.Values{"path": {"~/note"}}, "hello")
		}},
		{"cp through .. where the user may write", http.StatusOK, func() (int, []byte) {
			return upload(url.Values{"path": {"~/../pub/up"}}, "up")
		}},
		{"readdir of root's readable directory", http.StatusOK, func() (int, []byte) {
			return agentCall(t, h, http.MethodGet, fsTarget(agent.PathFSReadDir, "path", tr.etc), nil, nil)
		}},
	}
	for _, tt := range tests {
		status, body := tt.do()
		if status != tt.status {
			t.Errorf("%s = %d %s, want %d", tt.name, status, body, tt.status)
		}
		if tt.status == http.StatusForbidden && !strings.Contains(string(body), "permission denied") && !strings.Contains(string(body), "cannot act") {
			t.Errorf("%s: error %s does not say why", tt.name, body)
		}
	}
	if diff := cmp.Diff(before, treeSnapshot(t, tr.etc)); diff != "" {
		t.Errorf("refused requests changed root's directory (-before +after):\n%s", diff)
	}
	if b, _ := os.ReadFile(filepath.Join(tr.etc, "passwd")); string(b) != "root:x:0:0\n" {
		t.Errorf("etc/passwd = %q after refused copies", b)
	}
	checkOwner(t, filepath.Join(tr.etc, "passwd"), 0, 0)
	checkOwner(t, filepath.Join(tr.home, "note"), 1000, 1000)
	checkOwner(t, filepath.Join(tr.pub, "up"), 1000, 1000)

	// uid=0 is root: it may do all of it.
	scratch := filepath.Join(tr.etc, "scratch")
	if status, body := upload(url.Values{"path": {scratch}, "uid": {"0"}, "gid": {"0"}}, "s"); status != http.StatusOK {
		t.Fatalf("cp as root into root's directory = %d %s", status, body)
	}
	checkOwner(t, scratch, 0, 0)
	if status, body := agentCall(t, h, http.MethodGet, fsTarget(agent.PathFSStat, "path", filepath.Join(tr.private, "secret"), "uid", "0"), nil, nil); status != http.StatusOK {
		t.Errorf("stat as root in a private directory = %d %s", status, body)
	}
	if status, body := agentCall(t, h, http.MethodDelete, fsTarget(agent.PathFSRemove, "path", scratch, "uid", "0"), nil, nil); status != http.StatusOK {
		t.Errorf("remove as root = %d %s", status, body)
	}
	if _, err := os.Lstat(scratch); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s still there after a remove as root: %v", scratch, err)
	}
	if _, err := os.Lstat(filepath.Join(tr.etc, "shadow")); err != nil {
		t.Errorf("etc/shadow: %v", err)
	}
}

// TestGuestOpsMkdirAndWatchAsDefaultUser checks what a default-user mkdir
// creates and that its watch sees its home.
func TestGuestOpsMkdirAndWatchAsDefaultUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("acting as other users needs root")
	}
	h := newHarness(t)
	tr := newIdentityTree(t, h)
	status, body := agentCall(t, h, http.MethodPost, agent.PathFSMkdir, nil, strings.NewReader(`{"path":"~/a/b","recursive":true,"mode":"0750"}`))
	if status != http.StatusOK {
		t.Fatalf("mkdir ~/a/b = %d %s", status, body)
	}
	for _, p := range []string{"a", "a/b"} {
		checkOwner(t, filepath.Join(tr.home, p), 1000, 1000)
	}
	if mode, _ := fsMode(t, filepath.Join(tr.home, "a", "b")); mode != 0o750 {
		t.Errorf("mode of ~/a/b = %04o, want 0750", mode)
	}
	s := openWatch(t, h, url.Values{"paths": {"~"}, "uid": {""}}, "")
	must(t, os.WriteFile(filepath.Join(tr.home, "f"), nil, 0o644))
	s.waitFor("create", filepath.Join(tr.home, "f"))
}

// TestGuestPathsWithNUL checks that a NUL byte in any path or glob of a
// copy, file-system or watch request is a 400 naming the parameter.
func TestGuestPathsWithNUL(t *testing.T) {
	h := newHarness(t)
	dir := t.TempDir()
	bad := dir + "/a\x00b"
	tests := []struct {
		name, method, target string
		body                 string
		param                string
	}{
		{"upload path", http.MethodPost, agent.PathCopy + "?" + asMe(url.Values{"path": {bad}}).Encode(), "x", "path"},
		{"download path", http.MethodGet, agent.PathCopy + "?" + asMe(url.Values{"path": {bad}}).Encode(), "", "path"},
		{"tar exclude", http.MethodPost, agent.PathCopy + "?" + asMe(url.Values{"path": {dir}, "mode": {"tar"}, "exclude": {"a\x00"}}).Encode(), "", "exclude"},
		{"readdir", http.MethodGet, fsTarget(agent.PathFSReadDir, "path", bad), "", "path"},
		{"stat", http.MethodGet, fsTarget(agent.PathFSStat, "path", bad), "", "path"},
		{"remove", http.MethodDelete, fsTarget(agent.PathFSRemove, "path", bad), "", "path"},
		{"mkdir", http.MethodPost, agent.PathFSMkdir, `{"path":"` + dir + `/a\u0000b"}`, "path"},
		{"watch paths", http.MethodGet, agent.PathFSWatch + "?" + url.Values{"paths": {bad}}.Encode(), "", "paths"},
		{"watch patterns", http.MethodGet, agent.PathFSWatch + "?" + url.Values{"paths": {dir}, "patterns": {"*\x00"}}.Encode(), "", "patterns"},
	}
	for _, tt := range tests {
		var body io.Reader
		if tt.body != "" {
			body = strings.NewReader(tt.body)
		}
		status, b := fsCallRaw(t, h, tt.method, tt.target, body)
		var e api.ErrorResponse
		_ = json.Unmarshal(b, &e)
		if status != http.StatusBadRequest || !strings.Contains(e.Error, tt.param) || !strings.Contains(e.Error, "NUL") {
			t.Errorf("%s with a NUL = %d %s, want 400 naming %s and the NUL", tt.name, status, b, tt.param)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("requests with a NUL left %v", ents)
	}
}

// fsCallRaw is agentCall acting as the test's own user: uid and gid are
// added unless target names a uid.
func fsCallRaw(t *testing.T, h *harness, method, target string, body io.Reader) (int, []byte) {
	t.Helper()
	if u, err := url.Parse(target); err == nil && !u.Query().Has("uid") {
		target = u.Path + "?" + asMe(u.Query()).Encode()
	}
	return agentCall(t, h, method, target, nil, body)
}

// BenchmarkActorDo measures what taking a user's identity on costs a
// request: a goroutine, a locked thread, six system calls there and back.
func BenchmarkActorDo(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("switching identities needs root")
	}
	act := actor{account: account{UID: 1000, GID: 1000}, groups: []uint32{1000}, assume: true}
	for b.Loop() {
		if err := act.do(func() error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
}
