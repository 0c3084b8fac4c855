package vm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/agent"
	"github.com/openslicer/openslicer/internal/config"
	"github.com/openslicer/openslicer/internal/hypervisor/hypervisortest"
)

// fakeLayers is Layers over small files, with image.DiskLayers' semantics:
// a raw layer is a copy; a qcow2 disk is moved to the layer and replaced
// by an "overlay", a file naming the layer it is over. Freezes can be
// held (hold) or made to fail (failFreeze).
type fakeLayers struct {
	mu         sync.Mutex
	failFreeze error
	hold       chan struct{} // when set, Freeze waits for it to close
	freezing   int           // Freezes under way
	maxAtOnce  int           // the most Freezes under way at once
	frozen     []string      // layers made, in order
}

func overlayContent(layer string) string { return "over " + layer }

func (f *fakeLayers) Freeze(ctx context.Context, disk, format, layer string) error {
	f.mu.Lock()
	f.freezing++
	f.maxAtOnce = max(f.maxAtOnce, f.freezing)
	hold, fail := f.hold, f.failFreeze
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.freezing--
		f.mu.Unlock()
	}()
	if hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if fail != nil {
		return fail
	}
	if err := os.MkdirAll(filepath.Dir(layer), 0o755); err != nil {
		return err
	}
	if format == "qcow2" {
		if err := os.Rename(disk, layer); err != nil {
			return err
		}
		if err := os.WriteFile(disk, []byte(overlayContent(layer)), 0o644); err != nil {
			return err
		}
	} else {
		data, err := os.ReadFile(disk)
		if err != nil {
			return err
		}
		if err := os.WriteFile(layer, data, 0o644); err != nil {
			return err
		}
	}
	f.mu.Lock()
	f.frozen = append(f.frozen, layer)
	f.mu.Unlock()
	return os.Chmod(layer, 0o444)
}

func (f *fakeLayers) Unfreeze(disk, format, layer string) error {
	if _, err := os.Stat(layer); err != nil {
		return nil
	}
	if format != "qcow2" {
		return os.Remove(layer)
	}
	if data, err := os.ReadFile(disk); err == nil && string(data) == overlayContent(layer) {
		os.Remove(disk)
	}
	if _, err := os.Stat(disk); err == nil {
		return os.Remove(layer)
	}
	os.Chmod(layer, 0o644)
	return os.Rename(layer, disk)
}

func (f *fakeLayers) Overlay(ctx context.Context, layer, format, dst string) (string, error) {
	if _, err := os.Stat(layer); err != nil {
		return "", err
	}
	if format == "qcow2" {
		return "qcow2", os.WriteFile(dst, []byte(overlayContent(layer)), 0o644)
	}
	data, err := os.ReadFile(layer)
	if err != nil {
		return "", err
	}
	return "raw", os.WriteFile(dst, data, 0o644)
}

func (f *fakeLayers) Drop(layer string) error {
	if err := os.Remove(layer); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// qcow2Clone is fakeClone for a backend with qcow2 disks.
func qcow2Clone(ctx context.Context, src, dst string, size int64) (string, error) {
	return "qcow2", os.WriteFile(dst, []byte("disk"), 0o644)
}

// forkGuests are the fake guests of a fork test: they answer health,
// first boot, secrets and clock, and run nothing, but record every
// buffered exec (the fix-ups), answering with exitCode.
type forkGuests struct {
	mu       sync.Mutex
	execs    []string            // the command of each exec, in order
	secrets  map[string][]string // the names last pushed, by guest
	exitCode int
	guests   int
	// noSSHKeys makes /etc/ssh missing; otherwise it holds a host key.
	noSSHKeys bool
	// machineIDs are the machine ids sent through the identity route,
	// identities the whole requests.
	machineIDs []string
	identities []agent.Identity
}

func (g *forkGuests) identityList() []agent.Identity {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]agent.Identity(nil), g.identities...)
}

func (g *forkGuests) serve(conn net.Conn) {
	sess, err := fakeGuestSession(conn)
	if err != nil {
		return
	}
	g.mu.Lock()
	g.guests++
	id := fmt.Sprint(g.guests)
	g.mu.Unlock()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/health", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(api.AgentHealthResponse{AgentUptime: 1, UserdataRan: true})
	})
	mux.HandleFunc("POST /v1/exec", func(w http.ResponseWriter, r *http.Request) {
		g.mu.Lock()
		g.execs = append(g.execs, r.URL.Query().Get("cmd"))
		code := g.exitCode
		g.mu.Unlock()
		res := api.ExecResult{ExitCode: code}
		if code != 0 {
			res.Stderr = "ssh-keygen: not found"
		}
		json.NewEncoder(w).Encode(res)
	})
	mux.HandleFunc("PUT /v1/secrets", func(w http.ResponseWriter, r *http.Request) {
		var files []agent.SecretFile
		json.NewDecoder(r.Body).Decode(&files)
		names := []string{}
		for _, f := range files {
			names = append(names, f.Name)
		}
		g.mu.Lock()
		if g.secrets == nil {
			g.secrets = map[string][]string{}
		}
		g.secrets[id] = names
		g.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("PUT /v1/identity", func(w http.ResponseWriter, r *http.Request) {
		var idy agent.Identity
		json.NewDecoder(r.Body).Decode(&idy)
		g.mu.Lock()
		g.machineIDs = append(g.machineIDs, idy.MachineID)
		g.identities = append(g.identities, idy)
		g.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /v1/fs/readdir", func(w http.ResponseWriter, r *http.Request) {
		g.mu.Lock()
		missing := g.noSSHKeys || r.URL.Query().Get("path") != "/etc/ssh"
		g.mu.Unlock()
		if missing {
			agent.WriteError(w, fmt.Errorf("readdir: %w", api.ErrNotFound))
			return
		}
		json.NewEncoder(w).Encode([]api.FSInfo{{Name: "moduli", Type: "file"}, {Name: "ssh_host_ed25519_key", Type: "file"}})
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	http.Serve(sess, mux)
}

func (g *forkGuests) machineIDList() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.machineIDs...)
}

func (g *forkGuests) execList() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.execs...)
}

// newCommitEnv is a manager with commits (fakeLayers) whose guests are
// forkGuests, over groups (default: sbox).
func newCommitEnv(t *testing.T, groups []config.HostGroup, net Network) (*env, *fakeLayers, *forkGuests) {
	t.Helper()
	if groups == nil {
		groups = []config.HostGroup{{Name: "sbox", VCPU: 2, RamGB: 1}}
	}
	guests := &forkGuests{}
	e := newEnvWith(t, &hypervisortest.Fake{Agent: guests.serve}, groups, net)
	layers := &fakeLayers{}
	e.m.opt.Layers, e.m.opt.CommitsDir = layers, filepath.Join(e.dir, "commits")
	return e, layers, guests
}

// stoppedVM creates a persistent VM in group and stops it (its machine
// exits), returning its hostname.
func (e *env) stoppedVM(t *testing.T, group string, req api.CreateNodeRequest) string {
	t.Helper()
	req.Persistent = true
	resp, err := e.m.Create(context.Background(), group, req, CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e.stop(t, resp.Hostname)
	return resp.Hostname
}

// stop makes the machine of host exit and waits until the VM is stopped.
func (e *env) stop(t *testing.T, host string) {
	t.Helper()
	for _, m := range e.fake.Running() {
		if m.Spec.Name == host {
			m.Exit()
		}
	}
	waitFor(t, func() bool {
		in, err := e.m.get(host)
		if err != nil {
			return false
		}
		return in.node().Status == api.StatusStopped
	})
}

// commitDirs lists what is under the commits directory.
func (e *env) commitDirs() []string {
	ents, _ := os.ReadDir(filepath.Join(e.dir, "commits"))
	var out []string
	for _, d := range ents {
		out = append(out, d.Name())
	}
	return out
}

// conflictNaming checks that err is ErrConflict and names every one of
// words.
func conflictNaming(t *testing.T, what string, err error, words ...string) {
	t.Helper()
	if !errors.Is(err, api.ErrConflict) {
		t.Fatalf("%s = %v, want ErrConflict", what, err)
	}
	for _, w := range words {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("%s = %v, want it to name %q", what, err, w)
		}
	}
}
