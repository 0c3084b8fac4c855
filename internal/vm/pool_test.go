package vm

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/agent"
	"github.com/openslicer/openslicer/internal/config"
	"github.com/openslicer/openslicer/internal/hypervisor/hypervisortest"
	"github.com/openslicer/openslicer/internal/vmstate"
)

// poolGuests are fake guests that record what the host asks of them: the
// commands of buffered execs (the hostname) and the first-boot data.
type poolGuests struct {
	mu         sync.Mutex
	execs      []string
	hostnames  []string // the hostnames sent through the identity route
	firstBoots []agent.FirstBoot
}

func (g *poolGuests) serve(conn net.Conn) {
	sess, err := fakeGuestSession(conn)
	if err != nil {
		return
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/health", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(api.AgentHealthResponse{AgentUptime: 1, UserdataRan: true})
	})
	mux.HandleFunc("POST /v1/exec", func(w http.ResponseWriter, r *http.Request) {
		g.mu.Lock()
		g.execs = append(g.execs, r.URL.Query().Get("cmd"))
		g.mu.Unlock()
		json.NewEncoder(w).Encode(api.ExecResult{})
	})
	mux.HandleFunc("PUT /v1/identity", func(w http.ResponseWriter, r *http.Request) {
		var id agent.Identity
		json.NewDecoder(r.Body).Decode(&id)
		g.mu.Lock()
		g.hostnames = append(g.hostnames, id.Hostname)
		g.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("PUT /v1/firstboot", func(w http.ResponseWriter, r *http.Request) {
		var fb agent.FirstBoot
		json.NewDecoder(r.Body).Decode(&fb)
		g.mu.Lock()
		g.firstBoots = append(g.firstBoots, fb)
		g.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	http.Serve(sess, mux)
}

func (g *poolGuests) names() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.hostnames...)
}

func (g *poolGuests) seen() ([]string, []agent.FirstBoot) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.execs...), append([]agent.FirstBoot(nil), g.firstBoots...)
}

// newPoolEnv is a manager whose group sbox (1 GiB) keeps warm VMs, under a
// memory budget (0: none), its pools started.
func newPoolEnv(t *testing.T, warm int, budget int64, net Network) (*env, *poolGuests) {
	t.Helper()
	guests := &poolGuests{}
	groups := []config.HostGroup{{Name: "sbox", VCPU: 2, RamGB: 1, Warm: warm}}
	if net != nil {
		groups[0].Network = &config.Network{Mode: "isolated"}
	}
	e := newEnvWith(t, &hypervisortest.Fake{Agent: guests.serve}, groups, net)
	e.m.opt.MemoryBudget = budget
	e.m.StartPools()
	return e, guests
}

// waitPool waits until the pool of sbox holds ready VMs and none filling.
// The bound is there so a broken pool fails the test instead of hanging
// it; nothing is timed.
func waitPool(t *testing.T, m *Manager, ready int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		st := m.PoolStatus()
		if len(st) == 1 && st[0].Ready == ready && st[0].Filling == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pool never reached %d ready: %+v", ready, st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A create takes a ready pool VM: it becomes the group's next node, with
// the request's tags, userdata and keys handed over only now, its guest
// renamed; pool VMs are never listed; the pool fills up again.
func TestPoolTakeAndRefill(t *testing.T) {
	e, guests := newPoolEnv(t, 2, 0, nil)
	ctx := context.Background()
	waitPool(t, e.m, 2)
	if nodes, _ := e.m.List(Filter{}); len(nodes) != 0 {
		t.Fatalf("pool vms are listed: %+v", nodes)
	}
	warm, fbs := guests.seen()
	if len(fbs) != 0 {
		t.Fatalf("pool vms got first-boot data before being taken: %+v", fbs)
	}
	// Each pool VM was warmed up: its own name through the identity
	// route, then true.
	warmNames := guests.names()
	if len(warm) != 2 || warm[0] != "true" || warm[1] != "true" || len(warmNames) != 2 ||
		!slices.Contains(warmNames, "sbox-w1") || !slices.Contains(warmNames, "sbox-w2") {
		t.Fatalf("warm-up execs = %q, hostnames %q", warm, warmNames)
	}
	if _, err := e.m.get("sbox-w1"); err == nil {
		t.Fatal("a pool vm is reachable by its pool name")
	}

	resp, err := e.m.Create(ctx, "sbox", api.CreateNodeRequest{
		Tags: []string{"job=1"}, Userdata: "echo hi", SSHKeys: []string{"ssh-ed25519 AAAA k"}, Persistent: true,
	}, CreateOptions{Wait: WaitAgent})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Hostname != "sbox-1" {
		t.Fatalf("hostname %q, want sbox-1", resp.Hostname)
	}
	rec, err := e.store.Get("sbox-1")
	if err != nil {
		t.Fatal(err)
	}
	if rec.MachineName != "sbox-w1" || rec.Pool || rec.State != vmstate.Running || !rec.Persistent ||
		rec.Disk != filepath.Join(e.dir, "disks", "sbox-w1.img") || rec.RunDir != filepath.Join(e.dir, "run", "sbox-w1") {
		t.Fatalf("record of the taken vm: %+v", rec)
	}
	if _, err := e.store.Get("sbox-w1"); err == nil {
		t.Fatal("the pool record is still there")
	}
	_, fbs = guests.seen()
	if len(fbs) != 1 || fbs[0].Userdata != "echo hi" || len(fbs[0].SSHKeys) != 1 {
		t.Fatalf("first-boot data = %+v, want the request's, once", fbs)
	}
	after := guests.names()[len(warmNames):] // a refill's warm-up may follow
	if n := countOf(after, "sbox-1"); n != 1 {
		t.Fatalf("hostnames after the warm-ups = %q, want sbox-1 once", after)
	}
	nodes, _ := e.m.List(Filter{})
	if len(nodes) != 1 || nodes[0].Hostname != "sbox-1" || nodes[0].Tags[0] != "job=1" {
		t.Fatalf("List = %+v", nodes)
	}
	// The console log is found through the record.
	os.WriteFile(filepath.Join(e.dir, "logs", "sbox-w1.txt"), []byte("booted\n"), 0o644)
	if logs, err := e.m.Logs("sbox-1", 0); err != nil || logs.Content != "booted\n" {
		t.Fatalf("Logs = %+v, %v", logs, err)
	}

	waitPool(t, e.m, 2) // refilled
	if _, err := e.store.Get("sbox-w3"); err != nil {
		t.Fatalf("refill: %v", err)
	}
	if _, err := e.m.Delete(ctx, "sbox", "sbox-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(rec.Disk); !os.IsNotExist(err) {
		t.Fatalf("disk of the deleted vm: %v", err)
	}
	if err := e.m.Close(ctx, StopShutDown); err != nil {
		t.Fatal(err)
	}
	e.assertEmpty(t)
	if entries, _ := os.ReadDir(filepath.Join(e.dir, "logs")); len(entries) != 1 {
		t.Errorf("console logs left: %v (only the node's is kept)", entries)
	}
}

// A request a pool VM cannot serve is booted cold, and leaves the pool.
func TestPoolIncompatibleCreateBootsCold(t *testing.T) {
	e, _ := newPoolEnv(t, 1, 0, nil)
	ctx := context.Background()
	waitPool(t, e.m, 1)
	resp, err := e.m.Create(ctx, "sbox", api.CreateNodeRequest{CPUs: 1}, CreateOptions{Wait: WaitAgent})
	if err != nil {
		t.Fatal(err)
	}
	rec, _ := e.store.Get(resp.Hostname)
	if rec.MachineName != "" || rec.CPUs != 1 {
		t.Fatalf("a 1-vCPU create was served from the pool: %+v", rec)
	}
	if st := e.m.PoolStatus(); st[0].Ready != 1 {
		t.Fatalf("pool after a cold create: %+v", st)
	}
	for _, tc := range []struct {
		req  api.CreateNodeRequest
		want bool
	}{
		{api.CreateNodeRequest{}, true},
		{api.CreateNodeRequest{CPUs: 2, RamBytes: 1 << 30, Tags: []string{"a"}, Secrets: []string{"x"}}, true},
		{api.CreateNodeRequest{RamBytes: 512 << 20}, false},
		{api.CreateNodeRequest{Network: &api.CreateNodeNetworkPolicy{}}, false},
	} {
		g := e.m.groups["sbox"]
		cpus, ram, _ := checkCreate(g, tc.req, CreateOptions{})
		if got := poolServes(g, tc.req, cpus, ram, false); got != tc.want {
			t.Errorf("poolServes(%+v) = %v, want %v", tc.req, got, tc.want)
		}
		if poolServes(g, tc.req, cpus, ram, true) {
			t.Errorf("a count vm is served from the pool")
		}
	}
}

func TestPoolDecision(t *testing.T) {
	const gib = 1 << 30
	for _, tc := range []struct {
		target, have int
		used, budget int64
		want         bool
	}{
		{2, 0, 0, 0, true},
		{2, 2, 0, 0, false},
		{2, 1, 3 * gib, 4 * gib, true},  // exactly fits
		{2, 1, 3 * gib, 3 * gib, false}, // past the budget
		{0, 0, 0, 0, false},
	} {
		if got, why := poolDecision(tc.target, tc.have, tc.used, gib, tc.budget); got != tc.want {
			t.Errorf("poolDecision(%+v) = %v (%s), want %v", tc, got, why, tc.want)
		}
	}
}

// The pool fills only within the memory budget, counting nodes: a node
// taken from it keeps its memory, and a delete lets the pool fill again.
func TestPoolMemoryBudget(t *testing.T) {
	e, _ := newPoolEnv(t, 4, 2<<30, nil)
	ctx := context.Background()
	waitPool(t, e.m, 2)
	resp, err := e.m.Create(ctx, "sbox", api.CreateNodeRequest{}, CreateOptions{Wait: WaitAgent})
	if err != nil {
		t.Fatal(err)
	}
	waitPool(t, e.m, 1) // the node holds the other GiB: no refill
	if _, err := e.m.Delete(ctx, "sbox", resp.Hostname); err != nil {
		t.Fatal(err)
	}
	waitPool(t, e.m, 2)
	// A create past the budget is still served, cold or from the pool.
	for range 3 {
		if _, err := e.m.Create(ctx, "sbox", api.CreateNodeRequest{}, CreateOptions{Wait: WaitAgent}); err != nil {
			t.Fatal(err)
		}
	}
	waitPool(t, e.m, 0)
}

// 20 creates at once from a pool of 4: all succeed, with distinct names,
// and the network slots of nodes and pool VMs never collide.
func TestPoolConcurrentTakes(t *testing.T) {
	net := &fakeNetwork{}
	e, _ := newPoolEnv(t, 4, 0, net)
	ctx := context.Background()
	waitPool(t, e.m, 4)
	var wg sync.WaitGroup
	names := make([]string, 20)
	errs := make([]error, 20)
	for i := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := e.m.Create(ctx, "sbox", api.CreateNodeRequest{}, CreateOptions{Wait: WaitAgent})
			names[i], errs[i] = resp.Hostname, err
		}()
	}
	wg.Wait()
	seen, fromPool := map[string]bool{}, 0
	for i, n := range names {
		if errs[i] != nil {
			t.Fatalf("create %d: %v", i, errs[i])
		}
		if seen[n] {
			t.Fatalf("name %s given twice", n)
		}
		seen[n] = true
		if rec, _ := e.store.Get(n); rec.MachineName != "" {
			fromPool++
		}
	}
	if fromPool < 4 {
		t.Errorf("%d of 20 creates came from a full pool of 4", fromPool)
	}
	waitPool(t, e.m, 4)
	e.m.mu.Lock()
	slots, ips := map[int]string{}, map[string]string{}
	for _, in := range e.m.tableAndPool() {
		if prev, dup := slots[in.plan.Slot]; dup {
			t.Errorf("slot %d held by %s and %s", in.plan.Slot, prev, in.rec.Hostname)
		}
		slots[in.plan.Slot], ips[in.rec.IP] = in.rec.Hostname, in.rec.Hostname
	}
	e.m.mu.Unlock()
	if len(ips) != 24 {
		t.Errorf("%d distinct addresses for 24 vms", len(ips))
	}
}

// After a crash, the next daemon reclaims pool VMs (their records are
// never persistent) and a VM taken but never answered, with the disks and
// run directories named after their pool names, then fills again.
func TestPoolCrashReclaim(t *testing.T) {
	net := &fakeNetwork{}
	e, _ := newPoolEnv(t, 2, 0, net)
	ctx := context.Background()
	waitPool(t, e.m, 2)
	// A take whose answer never went out (the crash came first).
	_, err := e.m.Create(ctx, "sbox", api.CreateNodeRequest{Persistent: true}, CreateOptions{
		Wait:   WaitAgent,
		Answer: func(api.CreateNodeResponse, func() error) error { return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	// And one that was answered: it survives.
	kept, err := e.m.Create(ctx, "sbox", api.CreateNodeRequest{Persistent: true}, CreateOptions{Wait: WaitAgent})
	if err != nil {
		t.Fatal(err)
	}
	waitPool(t, e.m, 2)
	// The daemon dies: its fillers stop, nothing is drained.
	e.m.closeOnce.Do(func() { close(e.m.closing) })
	e.m.pool.wg.Wait()
	if n := len(e.fake.Running()); n != 4 {
		t.Fatalf("%d machines run before the restart, want 4", n)
	}

	m2 := New(Options{
		Config: e.m.opt.Config, Backend: e.fake, Store: e.store, Images: e.m.opt.Images, Clone: fakeClone,
		DisksDir: e.m.opt.DisksDir, RunDir: e.m.opt.RunDir, LogDir: e.m.opt.LogDir,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Network: net,
	})
	net.setups = nil
	if err := m2.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	recs, _ := e.store.List()
	if len(recs) != 1 || recs[0].Hostname != kept.Hostname || recs[0].MachineName == "" {
		t.Fatalf("records after recover: %+v, want only %s, taken from the pool", recs, kept.Hostname)
	}
	// Its network is found by its machine name, re-applied and kept; the
	// others' go.
	if len(net.setups) != 1 || net.setups[0].VM != recs[0].MachineName {
		t.Errorf("recover set up %+v, want the plan of %s", net.setups, recs[0].MachineName)
	}
	if keep, _ := net.reclaims[len(net.reclaims)-1](recs[0].MachineName, "sbox"); !keep {
		t.Errorf("recover reclaims the network of %s", recs[0].MachineName)
	}
	if keep, _ := net.reclaims[len(net.reclaims)-1]("sbox-w3", "sbox"); keep {
		t.Errorf("recover keeps the network of the pool vm sbox-w3")
	}
	if n := len(e.fake.Running()); n != 1 {
		t.Fatalf("%d machines run after recover, want the kept one", n)
	}
	kn := recs[0].MachineName
	for d, want := range map[string]string{"disks": kn + ".img " + kn + ".net.json", "run": kn} {
		entries, _ := os.ReadDir(filepath.Join(e.dir, d))
		if got := strings.Join(names(entries), " "); got != want {
			t.Errorf("%s after recover: %s, want %s", d, got, want)
		}
	}
	if nodes, _ := m2.List(Filter{}); len(nodes) != 1 || nodes[0].Hostname != kept.Hostname {
		t.Fatalf("List after recover = %+v", nodes)
	}
	m2.StartPools()
	waitPool(t, m2, 2)
	if _, err := e.store.Get("sbox-w5"); err != nil {
		t.Errorf("refill after the restart did not take new pool names: %v", err)
	}
	if err := m2.Close(ctx, StopShutDown); err != nil {
		t.Fatal(err)
	}
	if n := len(e.fake.Running()); n != 0 {
		t.Fatalf("%d machines run after the stop", n)
	}
}

func names(entries []os.DirEntry) []string {
	out := []string{}
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// PoolStatus shows each pooled group, ready and filling; a pool VM whose
// machine ends is removed and replaced.
func TestPoolStatusAndExit(t *testing.T) {
	e, _ := newPoolEnv(t, 3, 0, nil)
	waitPool(t, e.m, 3)
	if got, want := fmt.Sprint(e.m.PoolStatus()), fmt.Sprint([]api.PoolInfo{{HostGroup: "sbox", Ready: 3, Target: 3}}); got != want {
		t.Fatalf("PoolStatus = %s, want %s", got, want)
	}
	e.m.mu.Lock()
	in := e.m.pooled["sbox-w2"]
	e.m.mu.Unlock()
	if err := in.machine.Kill(context.Background()); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if _, err := e.store.Get("sbox-w4"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no replacement for the pool vm whose machine ended")
		}
	}
	waitPool(t, e.m, 3)
	if _, err := e.store.Get("sbox-w2"); err == nil {
		t.Fatal("the record of an exited pool vm is kept")
	}
	e.m.mu.Lock()
	n := len(e.m.pooled)
	e.m.mu.Unlock()
	if n != 3 {
		t.Fatalf("%d pool vms held, want 3", n)
	}
}

// A persistent VM taken from the pool keeps its machine name through a
// stop, a restart and a relaunch, and also through a suspend and restore:
// the same disk, run directory and console log, its node name on the
// guest's command line.
func TestPoolTakenVMRelaunchAndSuspend(t *testing.T) {
	e, _ := newPoolEnv(t, 1, 0, nil)
	ctx := context.Background()
	waitPool(t, e.m, 1)
	resp, err := e.m.Create(ctx, "sbox", api.CreateNodeRequest{Persistent: true}, CreateOptions{Wait: WaitAgent})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.m.Suspend(ctx, resp.Hostname); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "disks", "sbox-w1.state")); err != nil {
		t.Fatalf("state directory not under the machine name: %v", err)
	}
	if err := e.m.Restore(ctx, resp.Hostname, CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := e.m.Close(ctx, StopShutDown); err != nil {
		t.Fatal(err)
	}
	m2 := New(Options{
		Config: e.m.opt.Config, Backend: e.fake, Store: e.store, Images: e.m.opt.Images, Clone: fakeClone,
		DisksDir: e.m.opt.DisksDir, RunDir: e.m.opt.RunDir, LogDir: e.m.opt.LogDir,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	t.Cleanup(func() { m2.Close(ctx, StopShutDown) })
	if err := m2.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := m2.Relaunch(ctx, resp.Hostname, CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	running := e.fake.Running()
	if len(running) != 1 {
		t.Fatalf("%d machines run, want the relaunched one", len(running))
	}
	spec := running[0].Spec
	if spec.RunDir != filepath.Join(e.dir, "run", "sbox-w1") || spec.Disks[0].Path != filepath.Join(e.dir, "disks", "sbox-w1.img") ||
		spec.ConsoleLog != filepath.Join(e.dir, "logs", "sbox-w1.txt") || !strings.Contains(spec.Cmdline, "slicer.hostname=sbox-1") {
		t.Fatalf("relaunched spec: %+v", spec)
	}
}

// countOf is how many times s holds v.
func countOf(s []string, v string) int {
	n := 0
	for _, x := range s {
		if x == v {
			n++
		}
	}
	return n
}
