package vm

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/config"
	"github.com/openslicer/openslicer/internal/hypervisor/hypervisortest"
	"github.com/openslicer/openslicer/internal/network"
)

// fakeNetwork records what the manager asks of the network host. Its
// attachments have no namespace, so machines start where the test runs.
type fakeNetwork struct {
	mu        sync.Mutex
	setErr    error
	setups    []network.Plan
	up        map[string]bool // VMs set up and not torn down
	teardowns []network.Plan
	reclaims  []func(vm, group string) (bool, bool)
}

func (f *fakeNetwork) Setup(ctx context.Context, p network.Plan) (network.Attachment, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.setups = append(f.setups, p)
	if f.up == nil {
		f.up = map[string]bool{}
	}
	f.up[p.VM] = true // a failed Setup may leave objects too
	if f.setErr != nil {
		return network.Attachment{}, f.setErr
	}
	return network.Attachment{TAP: p.TAP, MAC: p.MAC}, nil
}

func (f *fakeNetwork) Teardown(ctx context.Context, p network.Plan) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.teardowns = append(f.teardowns, p)
	delete(f.up, p.VM)
	return nil
}

func (f *fakeNetwork) Reclaim(ctx context.Context, keepVM, keepGroup func(string) bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reclaims = append(f.reclaims, func(vm, group string) (bool, bool) { return keepVM(vm), keepGroup(group) })
	for vm := range f.up {
		if !keepVM(vm) {
			delete(f.up, vm)
		}
	}
	return nil
}

func (f *fakeNetwork) upVMs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for vm := range f.up {
		out = append(out, vm)
	}
	slices.Sort(out)
	return out
}

func netGroups() []config.HostGroup {
	bridge := config.HostGroup{Name: "br", VCPU: 1, RamGB: 1, Network: &config.Network{
		Mode: network.ModeBridge, Bridge: "brtest0", TapPrefix: "brtap", Gateway: "10.99.0.1/24",
	}, DNSServers: []string{"10.99.0.53"}}
	isolated := config.HostGroup{Name: "iso", VCPU: 1, RamGB: 1, Network: &config.Network{
		Mode: network.ModeIsolated, Range: "169.254.100.0/24", Drop: []string{"10.0.0.0/8"},
	}}
	return []config.HostGroup{bridge, isolated, {Name: "plain", VCPU: 1, RamGB: 1}}
}

func TestCreateWiresNetwork(t *testing.T) {
	fake, net := &hypervisortest.Fake{}, &fakeNetwork{}
	e := newEnvWith(t, fake, netGroups(), net)
	ctx := context.Background()

	first, err := e.m.Create(ctx, "br", api.CreateNodeRequest{}, CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	second, err := e.m.Create(ctx, "br", api.CreateNodeRequest{}, CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if first.IP != "10.99.0.2/24" || second.IP != "10.99.0.3/24" {
		t.Fatalf("create IPs %q, %q; want 10.99.0.2/24 and 10.99.0.3/24", first.IP, second.IP)
	}
	nodes, _ := e.m.List(Filter{Group: "br"})
	if len(nodes) != 2 || nodes[0].IP != "10.99.0.2" {
		t.Fatalf("List = %+v, want the bare IP 10.99.0.2 first", nodes)
	}
	var spec *hypervisortest.Machine
	for _, r := range fake.Running() {
		if r.Spec.Name == first.Hostname {
			spec = r
		}
	}
	if spec == nil || spec.Spec.TAP != "brtap0" || spec.Spec.MAC == "" {
		t.Fatalf("machine of %s has no NIC: %+v", first.Hostname, spec)
	}
	wantArg := "ip=10.99.0.2::10.99.0.1:255.255.255.0:" + first.Hostname + ":eth0:off:10.99.0.53"
	if !strings.HasSuffix(spec.Spec.Cmdline, " "+wantArg) {
		t.Errorf("cmdline %q does not end with %q", spec.Spec.Cmdline, wantArg)
	}
	if _, err := os.Stat(e.m.planPath(first.Hostname)); err != nil {
		t.Errorf("plan not recorded: %v", err)
	}

	// A deleted VM's network goes, and its slot is taken by the next VM.
	if _, err := e.m.Delete(ctx, "br", first.Hostname); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{second.Hostname}, net.upVMs()); diff != "" {
		t.Errorf("networks up after delete (-want +got):\n%s", diff)
	}
	third, err := e.m.Create(ctx, "br", api.CreateNodeRequest{}, CreateOptions{})
	if err != nil || third.IP != "10.99.0.2/24" {
		t.Fatalf("create after delete = %+v, %v; want the freed 10.99.0.2/24", third, err)
	}

	// A group without a network boots without a NIC, as before.
	plain, err := e.m.Create(ctx, "plain", api.CreateNodeRequest{}, CreateOptions{})
	if err != nil || plain.IP != "" {
		t.Fatalf("plain create = %+v, %v", plain, err)
	}
	for _, r := range fake.Running() {
		if r.Spec.Name == plain.Hostname && (r.Spec.TAP != "" || strings.Contains(r.Spec.Cmdline, "ip=")) {
			t.Errorf("plain vm has a NIC: %+v", r.Spec)
		}
	}
	for _, h := range []string{second.Hostname, third.Hostname, plain.Hostname} {
		if _, err := e.m.Delete(ctx, "", h); err != nil {
			t.Fatal(err)
		}
	}
	if up := net.upVMs(); len(up) != 0 {
		t.Errorf("networks left after deleting every vm: %v", up)
	}
	e.assertEmpty(t)
}

func TestNetworkOverride(t *testing.T) {
	e := newEnvWith(t, &hypervisortest.Fake{}, netGroups(), &fakeNetwork{})
	ctx := context.Background()
	override := &api.CreateNodeNetworkPolicy{Allow: []string{"203.0.113.2:8080"}}
	for _, tc := range []struct {
		group string
		pol   *api.CreateNodeNetworkPolicy
	}{
		{"br", override},    // bridge groups take no override
		{"plain", override}, // nor do groups without a network
		{"iso", &api.CreateNodeNetworkPolicy{Drop: []string{"not-a-cidr"}}},
	} {
		if _, err := e.m.Create(ctx, tc.group, api.CreateNodeRequest{Network: tc.pol}, CreateOptions{}); !errors.Is(err, api.ErrInvalid) {
			t.Errorf("create in %s with %+v = %v, want ErrInvalid", tc.group, tc.pol, err)
		}
	}
	if recs, _ := e.store.List(); len(recs) != 0 {
		t.Fatalf("rejected creates left records: %+v", recs)
	}

	vm, err := e.m.Create(ctx, "iso", api.CreateNodeRequest{Network: override}, CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	plain, err := e.m.Create(ctx, "iso", api.CreateNodeRequest{}, CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if vm.IP != "169.254.100.2/30" || plain.IP != "169.254.100.6/30" {
		t.Errorf("isolated IPs %s, %s; want the first two /30s", vm.IP, plain.IP)
	}
	got, err := e.m.Describe(vm.Hostname)
	if err != nil {
		t.Fatal(err)
	}
	want := api.VMNetworkDescription{
		Mode: network.ModeIsolated, Source: network.SourceVM,
		HostGroup: api.VMNetworkPolicy{Allow: []string{}, Drop: []string{"10.0.0.0/8"}},
		Override:  override,
		Effective: api.VMNetworkPolicy{Allow: []string{"203.0.113.2:8080"}, Drop: []string{"10.0.0.0/8"}},
	}
	if diff := cmp.Diff(want, got.Network); diff != "" {
		t.Errorf("Describe network (-want +got):\n%s", diff)
	}
	got, _ = e.m.Describe(plain.Hostname)
	if got.Network.Source != network.SourceHostGroup || got.Network.Override != nil {
		t.Errorf("vm without override describes %+v, want the host group's policy", got.Network)
	}
}

func TestNetworkSetupFailureUnwinds(t *testing.T) {
	net := &fakeNetwork{setErr: errors.New("no bridge for you")}
	e := newEnvWith(t, &hypervisortest.Fake{}, netGroups(), net)
	if _, err := e.m.Create(context.Background(), "br", api.CreateNodeRequest{}, CreateOptions{}); err == nil {
		t.Fatal("create succeeded though the network setup failed")
	}
	if up := net.upVMs(); len(up) != 0 {
		t.Errorf("a failed setup was not torn down: %v", up)
	}
	e.assertEmpty(t)
}

func TestNetworkFollowsTheMachine(t *testing.T) {
	fake, net := &hypervisortest.Fake{}, &fakeNetwork{}
	e := newEnvWith(t, fake, netGroups(), net)
	ctx := context.Background()
	vm, err := e.m.Create(ctx, "iso", api.CreateNodeRequest{Persistent: true}, CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	fake.Running()[0].Exit()
	waitFor(t, func() bool { n, _ := e.m.List(Filter{}); return len(n) == 1 && n[0].Status == api.StatusStopped })
	if up := net.upVMs(); len(up) != 0 {
		t.Errorf("network of a stopped vm still up: %v", up)
	}
	if _, err := e.m.Relaunch(ctx, vm.Hostname, CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if len(net.setups) != 2 || !reflect.DeepEqual(net.setups[0], net.setups[1]) {
		t.Errorf("relaunch set up %d plans; want the recorded plan again", len(net.setups))
	}
	if err := e.m.Suspend(ctx, vm.Hostname); err != nil {
		t.Fatal(err)
	}
	if up := net.upVMs(); len(up) != 0 {
		t.Errorf("network of a suspended vm still up: %v", up)
	}
	if err := e.m.Restore(ctx, vm.Hostname, CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{vm.Hostname}, net.upVMs()); diff != "" {
		t.Errorf("networks up after restore (-want +got):\n%s", diff)
	}
}

func TestRecoverReappliesAndReclaims(t *testing.T) {
	fake, net := &hypervisortest.Fake{}, &fakeNetwork{}
	e := newEnvWith(t, fake, netGroups(), net)
	ctx := context.Background()
	keep, err := e.m.Create(ctx, "iso", api.CreateNodeRequest{Persistent: true}, CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	gone, err := e.m.Create(ctx, "br", api.CreateNodeRequest{}, CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The daemon dies: the next one finds both records.
	m2 := New(Options{
		Config: e.m.opt.Config, Backend: fake, Store: e.store, Images: e.m.opt.Images, Clone: fakeClone,
		DisksDir: e.m.opt.DisksDir, RunDir: e.m.opt.RunDir, LogDir: e.m.opt.LogDir,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Network: net,
	})
	t.Cleanup(func() { m2.Close(ctx, StopShutDown) })
	net.setups = nil
	if err := m2.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	if len(net.setups) != 1 || net.setups[0].VM != keep.Hostname || net.setups[0].Guest.Address.String() != keep.IP {
		t.Errorf("recover set up %+v; want the recorded plan of %s", net.setups, keep.Hostname)
	}
	if len(net.reclaims) != 1 {
		t.Fatalf("recover reclaimed %d times, want once", len(net.reclaims))
	}
	for _, tc := range []struct {
		vm, group         string
		keepVM, keepGroup bool
	}{
		{keep.Hostname, "br", true, true},
		{gone.Hostname, "iso", false, false},
		// This daemon's group without a network: its leftovers go.
		{"plain-7", "plain", false, false},
		// A group removed from the config: its leftovers and bridge go.
		// (The network host offers only this daemon's own objects, so
		// names alone never reach another daemon's.)
		{"other-1", "removed-group", false, false},
	} {
		kv, kg := net.reclaims[0](tc.vm, tc.group)
		if kv != tc.keepVM || kg != tc.keepGroup {
			t.Errorf("reclaim keeps vm %s: %v, group %s: %v; want %v, %v", tc.vm, kv, tc.group, kg, tc.keepVM, tc.keepGroup)
		}
	}
	if _, err := os.Stat(filepath.Join(e.m.opt.DisksDir, gone.Hostname+".net.json")); !os.IsNotExist(err) {
		t.Errorf("plan of the reclaimed vm kept: %v", err)
	}
	d, err := m2.Describe(keep.Hostname)
	if err != nil || d.Network.Mode != network.ModeIsolated || d.IP != bareIP(keep.IP) {
		t.Errorf("recovered vm describes %+v, %v", d, err)
	}
}

// A VM whose plan was recorded before instance ids keeps its objects'
// names while its machine runs; they are torn down by that plan, and its
// next start names them anew. A reclaimed VM's old objects go by its
// plan, since the reclaim pass sees only objects with an instance id.
func TestRecoverLegacyPlans(t *testing.T) {
	fake, net := &hypervisortest.Fake{}, &fakeNetwork{}
	e := newEnvWith(t, fake, netGroups(), net)
	ctx := context.Background()
	keep, err := e.m.Create(ctx, "iso", api.CreateNodeRequest{Persistent: true}, CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	gone, err := e.m.Create(ctx, "br", api.CreateNodeRequest{}, CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// As an earlier version recorded them: no naming, and the veth.
	for _, h := range []string{keep.Hostname, gone.Hostname} {
		data, err := os.ReadFile(e.m.planPath(h))
		if err != nil {
			t.Fatal(err)
		}
		old := strings.Replace(string(data), `"naming": 1`, `"host_veth": "`+h+`"`, 1)
		if old == string(data) {
			t.Fatalf("plan of %s has no naming field:\n%s", h, data)
		}
		if err := os.WriteFile(e.m.planPath(h), []byte(old), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// The daemon dies (its watchers with it); the next one recovers.
	// Wait for its watchers to return, or one could still see a machine
	// the next daemon kills and act on it.
	e.m.closeOnce.Do(func() { close(e.m.closing) })
	e.m.wg.Wait()
	m2 := New(Options{
		Config: e.m.opt.Config, Backend: fake, Store: e.store, Images: e.m.opt.Images, Clone: fakeClone,
		DisksDir: e.m.opt.DisksDir, RunDir: e.m.opt.RunDir, LogDir: e.m.opt.LogDir,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Network: net,
	})
	t.Cleanup(func() { m2.Close(ctx, StopShutDown) })
	net.setups, net.teardowns = nil, nil
	if err := m2.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	if len(net.setups) != 1 || net.setups[0].VM != keep.Hostname || net.setups[0].Naming != network.NamingLegacy {
		t.Errorf("recover set up %+v; want %s's plan with its old naming", net.setups, keep.Hostname)
	}
	if len(net.teardowns) != 1 || net.teardowns[0].VM != gone.Hostname || net.teardowns[0].Naming != network.NamingLegacy {
		t.Errorf("recover tore down %+v; want %s by its old plan", net.teardowns, gone.Hostname)
	}

	// The machine stops: its old objects go by the old plan, and the plan
	// moves to instance naming for the relaunch.
	for _, r := range fake.Running() {
		if r.Spec.Name == keep.Hostname {
			r.Exit()
		}
	}
	waitFor(t, func() bool { d, _ := m2.Describe(keep.Hostname); return d.Status == api.StatusStopped })
	if n := len(net.teardowns); n != 2 || net.teardowns[1].Naming != network.NamingLegacy {
		t.Fatalf("teardowns %+v; want the stopped vm's by its old plan", net.teardowns)
	}
	if p, err := m2.readPlan(keep.Hostname); err != nil || p.Naming != network.NamingInstance {
		t.Errorf("recorded plan after stop = %+v, %v; want instance naming", p, err)
	}
	if _, err := m2.Relaunch(ctx, keep.Hostname, CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if last := net.setups[len(net.setups)-1]; last.Naming != network.NamingInstance || last.Guest.Address.String() != keep.IP {
		t.Errorf("relaunch set up %+v; want instance naming and the same address %s", last, keep.IP)
	}
}
