package vm

import (
	"bytes"
	"context"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/agent"
	"github.com/openslicer/openslicer/internal/hypervisor/hypervisortest"
	"github.com/openslicer/openslicer/internal/network"
)

func TestRestoredIdentity(t *testing.T) {
	entropy := []byte("0123456789abcdef0123456789abcdef")
	plan := &network.Plan{Guest: network.Guest{
		Address: netip.MustParsePrefix("10.99.0.2/24"), Gateway: netip.MustParseAddr("10.99.0.1"),
		DNS: []netip.Addr{netip.MustParseAddr("10.99.0.53")},
	}}
	for _, tc := range []struct {
		name string
		plan *network.Plan
		want agent.Identity
	}{
		{"no network", nil, agent.Identity{Hostname: "sbox-1", Entropy: entropy}},
		{"network", plan, agent.Identity{Hostname: "sbox-1", Entropy: entropy, Network: &agent.Network{
			Device: "eth0", Address: plan.Guest.Address, Gateway: plan.Guest.Gateway, DNS: plan.Guest.DNS}}},
	} {
		got := restoredIdentity("sbox-1", tc.plan, entropy)
		if diff := cmp.Diff(tc.want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
			cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
			t.Errorf("%s: restoredIdentity (-want +got):\n%s", tc.name, diff)
		}
	}
}

// TestRestoreGivesIdentity: a created VM learns who it is from its command
// line and is sent no identity; a restored one is sent its hostname, its
// network and fresh entropy before the restore (wait=agent) answers, and
// each restore's entropy differs.
func TestRestoreGivesIdentity(t *testing.T) {
	agents := &fakeAgents{}
	e := newEnvWith(t, &hypervisortest.Fake{Agent: agents.serve}, netGroups(), &fakeNetwork{})
	ctx := context.Background()
	resp, err := e.m.Create(ctx, "br", api.CreateNodeRequest{Persistent: true}, CreateOptions{Wait: WaitAgent})
	if err != nil {
		t.Fatal(err)
	}
	host := resp.Hostname
	if ids := agents.identities(); len(ids) != 0 {
		t.Fatalf("a booted VM was sent identities %+v", ids)
	}
	for range 2 {
		if err := e.m.Suspend(ctx, host); err != nil {
			t.Fatal(err)
		}
		if err := e.m.Restore(ctx, host, CreateOptions{Wait: WaitAgent}); err != nil {
			t.Fatal(err)
		}
	}
	ids := agents.identities()
	if len(ids) != 2 {
		t.Fatalf("identities sent = %+v, want one per restore", ids)
	}
	for _, id := range ids {
		if id.Hostname != host || id.Network == nil || id.Network.Address.String() != resp.IP ||
			id.Network.Gateway.String() != "10.99.0.1" || len(id.Network.DNS) != 1 || len(id.Entropy) != identityEntropy {
			t.Errorf("identity after restore = %+v, want hostname %s, address %s, gateway, dns and %d bytes of entropy",
				id, host, resp.IP, identityEntropy)
		}
	}
	if bytes.Equal(ids[0].Entropy, ids[1].Entropy) {
		t.Errorf("two restores were given the same entropy")
	}
}

// TestShutdownAsksAgent: a shutdown is a power request to the agent, the
// action as asked; the guest then powers off (here: the fake machine
// exits) and the VM is stopped, not killed.
func TestShutdownAsksAgent(t *testing.T) {
	agents := &fakeAgents{}
	fake := &hypervisortest.Fake{Agent: agents.serve}
	e := newEnv(t, fake)
	ctx := context.Background()
	for _, tc := range []struct{ action, want string }{{ActionShutdown, agent.PowerOff}, {ActionReboot, agent.Reboot}} {
		resp, err := e.m.Create(ctx, "sbox", api.CreateNodeRequest{Persistent: true}, CreateOptions{Wait: WaitAgent})
		if err != nil {
			t.Fatal(err)
		}
		asked := make(chan string, 1)
		agents.mu.Lock()
		agents.power = func(action string) {
			asked <- action
			fake.Last(resp.Hostname).Exit()
		}
		agents.mu.Unlock()
		if err := e.m.Shutdown(ctx, resp.Hostname, tc.action); err != nil {
			t.Fatalf("Shutdown %s: %v", tc.action, err)
		}
		if got := <-asked; got != tc.want {
			t.Errorf("Shutdown %s asked the agent for %q, want %q", tc.action, got, tc.want)
		}
		if how := fake.Last(resp.Hostname).Ended(); how != "exit" {
			t.Errorf("Shutdown %s: machine ended by %q, want the guest's own exit", tc.action, how)
		}
		waitState(t, e, resp.Hostname, "stopped")
	}
}

// TestShutdownOfAnOldAgent: an agent older than the power route (404) is
// asked the way it was then, with busybox's command through exec; an agent
// that has the route is never sent an exec (TestShutdownAsksAgent's fake
// has no exec route).
func TestShutdownOfAnOldAgent(t *testing.T) {
	agents := &fakeAgents{}
	fake := &hypervisortest.Fake{Agent: agents.serve}
	e := newEnv(t, fake)
	ctx := context.Background()
	resp, err := e.m.Create(ctx, "sbox", api.CreateNodeRequest{Persistent: true}, CreateOptions{Wait: WaitAgent})
	if err != nil {
		t.Fatal(err)
	}
	ran := make(chan string, 1)
	agents.mu.Lock()
	agents.exec = func(cmd string) {
		ran <- cmd
		fake.Last(resp.Hostname).Exit()
	}
	agents.mu.Unlock()
	if err := e.m.Shutdown(ctx, resp.Hostname, ActionReboot); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if cmd := <-ran; cmd != "reboot" {
		t.Errorf("old agent was asked to exec %q, want reboot", cmd)
	}
	waitState(t, e, resp.Hostname, "stopped")
}
