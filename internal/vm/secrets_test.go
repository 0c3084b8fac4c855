package vm

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/yamux"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/agent"
	"github.com/openslicer/openslicer/internal/hypervisor/hypervisortest"
	"github.com/openslicer/openslicer/internal/secrets"
)

func entries(names ...string) []secrets.Entry {
	var out []secrets.Entry
	for _, n := range names {
		out = append(out, secrets.Entry{Secret: api.Secret{Name: n, Permissions: "0600"}, Data: []byte("v-" + n)})
	}
	return out
}

func TestSecretScope(t *testing.T) {
	for _, tc := range []struct {
		names, want []string
	}{
		{nil, nil},
		{[]string{}, nil}, // an empty list is no list: every secret
		{[]string{"b", "a", "b"}, []string{"a", "b"}},
	} {
		if got := secretScope(tc.names); !cmp.Equal(got, tc.want) {
			t.Errorf("secretScope(%q) = %q, want %q", tc.names, got, tc.want)
		}
	}
}

func TestMissingSecrets(t *testing.T) {
	all := entries("a", "b")
	for _, tc := range []struct {
		names, want []string
	}{
		{nil, nil},
		{[]string{"a", "b"}, nil},
		{[]string{"z", "a", "c", "z"}, []string{"c", "z"}},
	} {
		if got := missingSecrets(all, tc.names); !cmp.Equal(got, tc.want) {
			t.Errorf("missingSecrets(%q) = %q, want %q", tc.names, got, tc.want)
		}
	}
}

func TestScopedFiles(t *testing.T) {
	all := entries("a", "b", "c")
	all[1].UID, all[1].GID, all[1].Permissions = 1000, 1001, "0640"
	for _, tc := range []struct {
		name  string
		scope []string
		want  []agent.SecretFile
	}{
		{"all", nil, []agent.SecretFile{
			{Name: "a", Data: []byte("v-a"), Permissions: "0600"},
			{Name: "b", Data: []byte("v-b"), Permissions: "0640", UID: 1000, GID: 1001},
			{Name: "c", Data: []byte("v-c"), Permissions: "0600"},
		}},
		{"scoped", []string{"b"}, []agent.SecretFile{{Name: "b", Data: []byte("v-b"), Permissions: "0640", UID: 1000, GID: 1001}}},
		{"deleted since", []string{"gone"}, []agent.SecretFile{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, scopedFiles(all, tc.scope)); diff != "" {
				t.Errorf("scopedFiles (-want +got):\n%s", diff)
			}
		})
	}
}

// fakeGuest is the guest end of one agent session: it answers health,
// first boot, the push of secrets, identities and power requests, keeping
// the last set pushed and every identity.
type fakeGuest struct {
	sess *yamux.Session

	mu         sync.Mutex
	pushed     []agent.SecretFile // nil until the first push
	identities []agent.Identity
}

// fakeAgents serves every agent channel of a fake backend.
type fakeAgents struct {
	mu     sync.Mutex
	guests []*fakeGuest
	// power, when set, is called with a power request's action after it
	// has been answered; unset, the route is missing (404), as in an
	// agent older than it.
	power func(action string)
	// exec, when set, is called with the command of an exec, answered
	// with exit code 0; unset, the route is missing.
	exec func(cmd string)
}

func (f *fakeAgents) serve(conn net.Conn) {
	sess, err := fakeGuestSession(conn)
	if err != nil {
		return
	}
	g := &fakeGuest{sess: sess}
	f.mu.Lock()
	f.guests = append(f.guests, g)
	f.mu.Unlock()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/health", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(api.AgentHealthResponse{UserdataRan: true})
	})
	mux.HandleFunc("PUT /v1/firstboot", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("PUT /v1/secrets", func(w http.ResponseWriter, r *http.Request) {
		var files []agent.SecretFile
		if err := json.NewDecoder(r.Body).Decode(&files); err != nil || files == nil {
			http.Error(w, "bad secrets", http.StatusBadRequest)
			return
		}
		g.mu.Lock()
		g.pushed = files
		g.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("PUT /v1/identity", func(w http.ResponseWriter, r *http.Request) {
		var id agent.Identity
		if err := json.NewDecoder(r.Body).Decode(&id); err != nil {
			http.Error(w, "bad identity", http.StatusBadRequest)
			return
		}
		g.mu.Lock()
		g.identities = append(g.identities, id)
		g.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /v1/power", func(w http.ResponseWriter, r *http.Request) {
		var p agent.Power
		if f := f.powerFunc(); f == nil || json.NewDecoder(r.Body).Decode(&p) != nil {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(http.StatusAccepted)
		go f.powerFunc()(p.Action)
	})
	mux.HandleFunc("POST /v1/exec", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		run := f.exec
		f.mu.Unlock()
		if run == nil {
			http.NotFound(w, r)
			return
		}
		json.NewEncoder(w).Encode(api.ExecResult{})
		go run(r.URL.Query().Get("cmd"))
	})
	http.Serve(sess, mux) // until the host goes away
}

func (f *fakeAgents) powerFunc() func(string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.power
}

// identities returns every identity the guests were given, in the order
// of the guests' sessions.
func (f *fakeAgents) identities() []agent.Identity {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []agent.Identity
	for _, g := range f.guests {
		g.mu.Lock()
		out = append(out, g.identities...)
		g.mu.Unlock()
	}
	return out
}

// pushedSets returns, for every guest pushed to, the names and values it
// was last pushed as "name=value" lists, sorted.
func (f *fakeAgents) pushedSets() [][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out [][]string
	for _, g := range f.guests {
		g.mu.Lock()
		if g.pushed != nil {
			out = append(out, describe(g.pushed))
		}
		g.mu.Unlock()
	}
	sort.Slice(out, func(i, j int) bool { return strings.Join(out[i], ",") < strings.Join(out[j], ",") })
	return out
}

// pull asks the host for the guest's secrets, as `slicer-agent secrets
// sync` does, on a stream the guest opens.
func (g *fakeGuest) pull(t *testing.T) []agent.SecretFile {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{
		DialContext:       func(context.Context, string, string) (net.Conn, error) { return g.sess.Open() },
		DisableKeepAlives: true,
	}}
	resp, err := hc.Get("http://host/v1/host/secrets")
	if err != nil {
		t.Fatalf("pull: %v", err)
	}
	defer resp.Body.Close()
	var files []agent.SecretFile
	if err := json.NewDecoder(resp.Body).Decode(&files); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("pull: status %d, %v", resp.StatusCode, err)
	}
	return files
}

func describe(files []agent.SecretFile) []string {
	out := []string{}
	for _, f := range files {
		out = append(out, f.Name+"="+string(f.Data))
	}
	return out
}

// newSecretsEnv is a Manager whose fake guests run fakeAgents, with a real
// secret store holding db and api-key.
func newSecretsEnv(t *testing.T) (*env, *fakeAgents, *secrets.Store) {
	t.Helper()
	agents := &fakeAgents{}
	e := newEnv(t, &hypervisortest.Fake{Agent: agents.serve})
	store, err := secrets.Open(filepath.Join(t.TempDir(), "secrets"))
	if err != nil {
		t.Fatal(err)
	}
	e.m.opt.Secrets = store
	ctx := context.Background()
	for _, req := range []api.CreateSecretRequest{
		{Name: "db", Data: b64("pw-1"), Permissions: "0640", UID: 1000, GID: 1000},
		{Name: "api-key", Data: b64("k-1")},
	} {
		if _, err := store.Create(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	return e, agents, store
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestSecretsReachGuests(t *testing.T) {
	e, agents, store := newSecretsEnv(t)
	ctx := context.Background()
	wait := CreateOptions{Wait: WaitAgent}

	_, err := e.m.Create(ctx, "sbox", api.CreateNodeRequest{Secrets: []string{"nope", "db", "zzz"}}, wait)
	if !errors.Is(err, api.ErrInvalid) || !strings.Contains(err.Error(), "nope, zzz") {
		t.Fatalf("Create naming missing secrets = %v, want ErrInvalid naming nope and zzz", err)
	}
	e.assertEmpty(t)

	// A create that waits for the agent returns once its secrets are in.
	scoped, err := e.m.Create(ctx, "sbox", api.CreateNodeRequest{Secrets: []string{"db"}}, wait)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := agents.pushedSets(), [][]string{{"db=pw-1"}}; !cmp.Equal(got, want) {
		t.Errorf("after the scoped create, pushed %q, want %q", got, want)
	}
	if rec, err := e.store.Get(scoped.Hostname); err != nil || !cmp.Equal(rec.Secrets, []string{"db"}) {
		t.Errorf("record of %s has secrets %q, %v; want [db]", scoped.Hostname, rec.Secrets, err)
	}
	if _, err := e.m.Create(ctx, "sbox", api.CreateNodeRequest{}, wait); err != nil {
		t.Fatal(err)
	}
	want := [][]string{{"api-key=k-1", "db=pw-1"}, {"db=pw-1"}}
	if got := agents.pushedSets(); !cmp.Equal(got, want) {
		t.Errorf("after the unscoped create, pushed %q, want %q", got, want)
	}

	// Changes reach every running VM, within its scope.
	pw2 := b64("pw-2")
	if _, err := store.Update(ctx, "db", api.UpdateSecretRequest{Data: &pw2}); err != nil {
		t.Fatal(err)
	}
	if err := store.Delete("api-key"); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Create(ctx, api.CreateSecretRequest{Name: "new", Data: b64("n-1")}); err != nil {
		t.Fatal(err)
	}
	if err := e.m.SyncSecrets(ctx); err != nil {
		t.Fatalf("SyncSecrets: %v", err)
	}
	want = [][]string{{"db=pw-2"}, {"db=pw-2", "new=n-1"}}
	if got := agents.pushedSets(); !cmp.Equal(got, want) {
		t.Errorf("after SyncSecrets, pushed %q, want %q", got, want)
	}

	// A guest's pull gets the same set as its push.
	agents.mu.Lock()
	guests := append([]*fakeGuest(nil), agents.guests...)
	agents.mu.Unlock()
	for _, g := range guests {
		g.mu.Lock()
		pushed := g.pushed
		g.mu.Unlock()
		if pushed == nil {
			continue
		}
		if diff := cmp.Diff(pushed, g.pull(t)); diff != "" {
			t.Errorf("pulled set differs from the pushed one (-pushed +pulled):\n%s", diff)
		}
	}
}

func TestSecretsAfterRecover(t *testing.T) {
	e, agents, store := newSecretsEnv(t)
	ctx := context.Background()
	if _, err := e.m.Create(ctx, "sbox", api.CreateNodeRequest{Persistent: true, Secrets: []string{"db"}}, CreateOptions{Wait: WaitAgent}); err != nil {
		t.Fatal(err)
	}
	// The daemon dies; the secret changes before the next one starts.
	pw2 := b64("pw-2")
	if _, err := store.Update(ctx, "db", api.UpdateSecretRequest{Data: &pw2}); err != nil {
		t.Fatal(err)
	}
	m2 := New(Options{
		Config: e.m.opt.Config, Backend: e.fake, Store: e.store, Images: e.m.opt.Images, Clone: fakeClone,
		DisksDir: e.m.opt.DisksDir, RunDir: e.m.opt.RunDir, LogDir: e.m.opt.LogDir, Secrets: store,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	t.Cleanup(func() { m2.Close(ctx, StopShutDown) })
	if err := m2.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		for _, set := range agents.pushedSets() {
			if cmp.Equal(set, []string{"db=pw-2"}) {
				return true
			}
		}
		return false
	})
}

func TestCreateSecretsWithoutStore(t *testing.T) {
	e := newEnv(t, &hypervisortest.Fake{})
	_, err := e.m.Create(context.Background(), "sbox", api.CreateNodeRequest{Secrets: []string{"db"}}, CreateOptions{})
	if !errors.Is(err, api.ErrNotImplemented) {
		t.Fatalf("Create naming secrets without a store = %v, want ErrNotImplemented", err)
	}
	if err := e.m.SyncSecrets(context.Background()); err != nil {
		t.Errorf("SyncSecrets without a store = %v, want nil", err)
	}
	e.assertEmpty(t)
}

// fakeGuestSession is the guest's end of the agent channel for a fake
// guest: the yamux server the real agent runs, with its settings, logging
// nowhere. The connection is closed on failure.
func fakeGuestSession(conn net.Conn) (*yamux.Session, error) {
	sess, err := yamux.Server(conn, agent.YamuxConfig(slog.New(slog.DiscardHandler), false))
	if err != nil {
		conn.Close()
	}
	return sess, err
}
