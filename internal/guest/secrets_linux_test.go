package guest

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/agent"
)

// secretState is what the test sees of one file in the secrets directory.
type secretState struct {
	Data     string
	Mode     fs.FileMode
	UID, GID uint32
}

// readSecrets returns every entry of dir by name.
func readSecrets(t *testing.T, dir string) map[string]secretState {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]secretState{}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		out[e.Name()] = secretState{string(data), fi.Mode(), st.Uid, st.Gid}
	}
	return out
}

// self is a secret owned by the test's user, which works with and without
// root.
func self(name, data, perm string) agent.SecretFile {
	return agent.SecretFile{Name: name, Data: []byte(data), Permissions: perm, UID: uint32(os.Getuid()), GID: uint32(os.Getgid())}
}

func TestPutSecrets(t *testing.T) {
	h := newSecretsHarness(t)
	ctx := context.Background()
	dir := h.srv.paths.secretsDir
	uid, gid := uint32(os.Getuid()), uint32(os.Getgid())

	first := []agent.SecretFile{self("db", "pw-1", "0640"), self("api-key", "k-1", "0600"), self("empty", "", "0444")}
	if err := h.client.PutSecrets(ctx, first); err != nil {
		t.Fatalf("PutSecrets: %v", err)
	}
	want := map[string]secretState{
		"db":      {"pw-1", 0o640, uid, gid},
		"api-key": {"k-1", 0o600, uid, gid},
		"empty":   {"", 0o444, uid, gid},
	}
	if diff := cmp.Diff(want, readSecrets(t, dir)); diff != "" {
		t.Errorf("after the first PUT (-want +got):\n%s", diff)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode() != fs.ModeDir|0o755 {
		t.Errorf("secrets dir: %v, %v; want a 0755 directory", fi.Mode(), err)
	}

	// A second set drops api-key and empty, changes db, and whatever else
	// was put in the directory goes too.
	if err := os.WriteFile(filepath.Join(dir, "stray"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := h.client.PutSecrets(ctx, []agent.SecretFile{self("db", "pw-2", "0600")}); err != nil {
		t.Fatalf("second PutSecrets: %v", err)
	}
	want = map[string]secretState{"db": {"pw-2", 0o600, uid, gid}}
	if diff := cmp.Diff(want, readSecrets(t, dir)); diff != "" {
		t.Errorf("after the second PUT (-want +got):\n%s", diff)
	}

	if err := h.client.PutSecrets(ctx, nil); err != nil {
		t.Fatalf("PutSecrets(nil): %v", err)
	}
	if got := readSecrets(t, dir); len(got) != 0 {
		t.Errorf("after an empty set the directory holds %v", got)
	}
}

func TestPutSecretsOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: secrets are chowned to another user")
	}
	h := newSecretsHarness(t)
	f := agent.SecretFile{Name: "db", Data: []byte("pw"), Permissions: "0400", UID: 1000, GID: 1001}
	if err := h.client.PutSecrets(context.Background(), []agent.SecretFile{f}); err != nil {
		t.Fatalf("PutSecrets: %v", err)
	}
	want := map[string]secretState{"db": {"pw", 0o400, 1000, 1001}}
	if diff := cmp.Diff(want, readSecrets(t, h.srv.paths.secretsDir)); diff != "" {
		t.Errorf("secrets (-want +got):\n%s", diff)
	}
	fi, err := os.Stat(h.srv.paths.secretsDir)
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != 0 || st.Gid != 0 {
		t.Errorf("secrets dir owned by %d:%d, want 0:0", st.Uid, st.Gid)
	}
}

func TestPutSecretsRejects(t *testing.T) {
	h := newSecretsHarness(t)
	ctx := context.Background()
	dir := h.srv.paths.secretsDir
	if err := h.client.PutSecrets(ctx, []agent.SecretFile{self("keep", "v", "0600")}); err != nil {
		t.Fatal(err)
	}
	before := readSecrets(t, dir)
	for _, tc := range []struct {
		name  string
		files []agent.SecretFile
	}{
		{"traversal", []agent.SecretFile{self("../escape", "x", "0600")}},
		{"slash", []agent.SecretFile{self("a/b", "x", "0600")}},
		{"dot", []agent.SecretFile{self(".", "x", "0600")}},
		{"dot dot", []agent.SecretFile{self("..", "x", "0600")}},
		{"hidden", []agent.SecretFile{self(".hidden", "x", "0600")}},
		{"empty", []agent.SecretFile{self("", "x", "0600")}},
		{"twice", []agent.SecretFile{self("a", "x", "0600"), self("a", "y", "0600")}},
		{"bad mode", []agent.SecretFile{self("a", "x", "7777")}},
		// A good secret next to a bad one is not written either.
		{"one bad of two", []agent.SecretFile{self("good", "x", "0600"), self("a/b", "x", "0600")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := h.client.PutSecrets(ctx, tc.files)
			if !errors.Is(err, api.ErrInvalid) {
				t.Fatalf("PutSecrets = %v, want ErrInvalid", err)
			}
			if diff := cmp.Diff(before, readSecrets(t, dir)); diff != "" {
				t.Errorf("the directory changed (-before +after):\n%s", diff)
			}
		})
	}
	t.Run("not json", func(t *testing.T) {
		req, err := http.NewRequest(http.MethodPut, agent.PathSecrets, strings.NewReader(`{"name":"a"}`))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := h.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("PUT with an object body = %d, want 400", resp.StatusCode)
		}
	})
	if _, err := os.Stat(filepath.Join(filepath.Dir(dir), "escape")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a secret escaped the directory: %v", err)
	}
}

// hostSecrets is the host's side of a pull: a set the test can change.
type hostSecrets struct {
	mu    sync.Mutex
	files []agent.SecretFile
}

func (h *hostSecrets) set(files ...agent.SecretFile) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.files = files
}

func (h *hostSecrets) list(context.Context) ([]agent.SecretFile, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.files, nil
}

// serveControl runs the harness server's control socket until the test
// ends and returns its path.
func serveControl(t *testing.T, h *harness) string {
	path := filepath.Join(t.TempDir(), "agent.sock")
	l, err := listenControl(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(h.ctx)
	done := make(chan error, 1)
	go func() { done <- h.srv.serveControl(ctx, l, os.Geteuid()) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("serveControl = %v, want context.Canceled", err)
		}
	})
	return path
}

// newSecretsHarness is newHarness, except that the guest's session ending
// in a reset is not a failure. The last frame the guest sends (closing a
// stream, after the host has its answer) may still be unread when the
// test's cleanup closes the host's socket, which the guest's end of a unix
// socket pair reports as a reset or broken pipe. Requests the guest sends
// the host make that more likely; newHarness shows it too, rarely.
func newSecretsHarness(t *testing.T) *harness {
	h := newHarness(t)
	h.serve = func(_ int, guest net.Conn) {
		err := h.srv.ServeConn(h.ctx, guest)
		if err != nil && h.ctx.Err() == nil && !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE) {
			t.Errorf("ServeConn: %v", err)
		}
	}
	return h
}

func TestSecretsSyncFromHost(t *testing.T) {
	h := newSecretsHarness(t)
	host := &hostSecrets{}
	h.client.ServeGuest(agent.HostSecretsHandler(host.list))
	sock := serveControl(t, h)
	ctx := context.Background()

	// No host session yet: the guest cannot ask.
	if _, err := h.srv.syncFromHost(ctx); !errors.Is(err, api.ErrUnavailable) {
		t.Fatalf("syncFromHost with no session = %v, want ErrUnavailable", err)
	}
	_, err := SyncSecrets(ctx, sock)
	var aerr *api.Error
	if !errors.As(err, &aerr) || aerr.StatusCode != http.StatusServiceUnavailable || !strings.Contains(err.Error(), "no session with the host") {
		t.Fatalf("SyncSecrets with no session = %v, want 503 saying there is no host session", err)
	}

	if _, err := h.client.Health(ctx); err != nil { // the host connects
		t.Fatal(err)
	}
	host.set(self("db", "pw-1", "0640"), self("api-key", "k-1", "0600"))
	names, err := SyncSecrets(ctx, sock)
	if err != nil {
		t.Fatalf("SyncSecrets: %v", err)
	}
	if want := []string{"api-key", "db"}; !cmp.Equal(names, want) {
		t.Errorf("SyncSecrets = %q, want %q", names, want)
	}
	uid, gid := uint32(os.Getuid()), uint32(os.Getgid())
	want := map[string]secretState{"db": {"pw-1", 0o640, uid, gid}, "api-key": {"k-1", 0o600, uid, gid}}
	if diff := cmp.Diff(want, readSecrets(t, h.srv.paths.secretsDir)); diff != "" {
		t.Errorf("after a pull (-want +got):\n%s", diff)
	}

	// A pull applies the set as a push does: what the host dropped goes.
	host.set(self("db", "pw-2", "0600"))
	if names, err := SyncSecrets(ctx, sock); err != nil || !cmp.Equal(names, []string{"db"}) {
		t.Fatalf("second SyncSecrets = %q, %v; want [db]", names, err)
	}
	want = map[string]secretState{"db": {"pw-2", 0o600, uid, gid}}
	if diff := cmp.Diff(want, readSecrets(t, h.srv.paths.secretsDir)); diff != "" {
		t.Errorf("after the second pull (-want +got):\n%s", diff)
	}

	// The host's set is checked as a push is.
	host.set(self("../escape", "x", "0600"))
	if _, err := SyncSecrets(ctx, sock); err == nil || !strings.Contains(err.Error(), "escape") {
		t.Errorf("SyncSecrets of a hostile name = %v, want an error naming it", err)
	}
	if diff := cmp.Diff(want, readSecrets(t, h.srv.paths.secretsDir)); diff != "" {
		t.Errorf("a refused set changed the directory (-want +got):\n%s", diff)
	}
}

func TestSecretsSyncHostServesNothing(t *testing.T) {
	h := newSecretsHarness(t) // no ServeGuest
	ctx := context.Background()
	if _, err := h.client.Health(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := h.srv.syncFromHost(ctx); !errors.Is(err, api.ErrNotImplemented) {
		t.Fatalf("syncFromHost from a host that serves nothing = %v, want ErrNotImplemented", err)
	}
}

func TestSyncSecretsNoAgent(t *testing.T) {
	_, err := SyncSecrets(context.Background(), filepath.Join(t.TempDir(), "agent.sock"))
	if err == nil || !strings.Contains(err.Error(), "no agent listens") {
		t.Fatalf("SyncSecrets with no socket = %v, want an error saying no agent listens", err)
	}
}

func TestControlSocketRefusesOtherUsers(t *testing.T) {
	h := newSecretsHarness(t)
	path := filepath.Join(t.TempDir(), "agent.sock")
	l, err := listenControl(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("control socket: %v, %v; want mode 0600", fi, err)
	}
	// Served for another user than the test's, it refuses the test.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.srv.serveControl(ctx, l, os.Geteuid()+1) }()
	_, err = SyncSecrets(context.Background(), path)
	if !errors.Is(err, api.ErrForbidden) || !strings.Contains(err.Error(), "needs root") {
		t.Errorf("SyncSecrets as another user = %v, want 403 saying it needs root", err)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("serveControl = %v, want context.Canceled", err)
	}
}
