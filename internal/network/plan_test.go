package network

import (
	"encoding/json"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/config"
)

func bridgeGroup(mod func(n *config.Network)) config.HostGroup {
	n := &config.Network{Mode: ModeBridge, Bridge: "brvm0", TapPrefix: "vmtap", Gateway: "192.168.137.1/24"}
	if mod != nil {
		mod(n)
	}
	return config.HostGroup{Name: "vm", Network: n}
}

func isolatedGroup(name string, mod func(n *config.Network)) config.HostGroup {
	n := &config.Network{Mode: ModeIsolated}
	if mod != nil {
		mod(n)
	}
	return config.HostGroup{Name: name, Network: n}
}

var defaultDNS = []netip.Addr{netip.MustParseAddr("8.8.8.8"), netip.MustParseAddr("1.1.1.1")}

func TestPlanBridgeFirstVM(t *testing.T) {
	got, err := PlanBridge(bridgeGroup(nil), "vm-1", 0)
	if err != nil {
		t.Fatal(err)
	}
	want := Plan{
		Mode: ModeBridge, Group: "vm", VM: "vm-1", Slot: 0, TAP: "vmtap0", MAC: got.MAC, Bridge: "brvm0",
		Guest: Guest{
			Address: netip.MustParsePrefix("192.168.137.2/24"),
			Gateway: netip.MustParseAddr("192.168.137.1"), DNS: defaultDNS,
		},
		Policy: Policy{Group: emptyPolicy(), Effective: emptyPolicy()}, Naming: NamingInstance,
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
		cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("PlanBridge() mismatch (-want +got):\n%s", diff)
	}
}

func TestPlanBridgeAddresses(t *testing.T) {
	tests := []struct {
		name    string
		mod     func(n *config.Network)
		slot    int
		addr    string // "" when an error is expected
		tap     string
		errIs   error
		errPart string
	}{
		{name: "from .2 upward", slot: 5, addr: "192.168.137.7/24", tap: "vmtap5"},
		{name: "steps over a gateway in the pool", slot: 3, addr: "192.168.137.6/24", tap: "vmtap3",
			mod: func(n *config.Network) { n.Gateway = "192.168.137.5/24" }},
		{name: "before a gateway in the pool", slot: 2, addr: "192.168.137.4/24", tap: "vmtap2",
			mod: func(n *config.Network) { n.Gateway = "192.168.137.5/24" }},
		{name: "last host address", slot: 252, addr: "192.168.137.254/24", tap: "vmtap252"},
		{name: "never the broadcast", slot: 253, errIs: api.ErrUnavailable},
		{name: "range", slot: 1, addr: "192.168.137.11/24", tap: "vmtap1",
			mod: func(n *config.Network) { n.Range = "192.168.137.10-192.168.137.11" }},
		{name: "range exhausted", slot: 2, errIs: api.ErrUnavailable,
			mod: func(n *config.Network) { n.Range = "192.168.137.10-192.168.137.11" }},
		{name: "addresses, bare or CIDR", slot: 1, addr: "192.168.137.60/24", tap: "vmtap1",
			mod: func(n *config.Network) { n.Addresses = []string{"192.168.137.50/24", "192.168.137.60"} }},
		{name: "addresses exhausted", slot: 2, errIs: api.ErrUnavailable,
			mod: func(n *config.Network) { n.Addresses = []string{"192.168.137.50/24", "192.168.137.60"} }},
		{name: "a /30 holds one VM", slot: 1, errIs: api.ErrUnavailable,
			mod: func(n *config.Network) { n.Gateway = "10.0.0.1/30" }},
		{name: "TAP name too long", slot: 10, errPart: "longer than 15",
			mod: func(n *config.Network) { n.TapPrefix = "abcdefghijklmn" }},
		{name: "defaults not applied", errPart: "must be set",
			mod: func(n *config.Network) { n.Bridge = "" }},
		{name: "bad gateway", errPart: "not an IPv4 CIDR",
			mod: func(n *config.Network) { n.Gateway = "fd00::1/64" }},
		{name: "negative slot", slot: -1, errPart: "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := PlanBridge(bridgeGroup(tt.mod), "vm-1", tt.slot)
			if tt.addr == "" {
				if err == nil || tt.errIs != nil && !errors.Is(err, tt.errIs) || !strings.Contains(err.Error(), tt.errPart) {
					t.Fatalf("PlanBridge() error = %v, want %v containing %q", err, tt.errIs, tt.errPart)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.Guest.Address.String() != tt.addr || p.TAP != tt.tap {
				t.Errorf("PlanBridge() = %s on %s, want %s on %s", p.Guest.Address, p.TAP, tt.addr, tt.tap)
			}
		})
	}
}

func TestPlanBridgeDNSAndMAC(t *testing.T) {
	g := bridgeGroup(nil)
	g.DNSServers = []string{"127.0.0.1"}
	a, err := PlanBridge(g, "vm-1", 0)
	if err != nil {
		t.Fatal(err)
	}
	if want := []netip.Addr{netip.MustParseAddr("127.0.0.1")}; !cmp.Equal(a.Guest.DNS, want, cmp.Comparer(func(x, y netip.Addr) bool { return x == y })) {
		t.Errorf("DNS = %v, want %v", a.Guest.DNS, want)
	}
	again, _ := PlanBridge(g, "vm-1", 3)
	other, _ := PlanBridge(g, "vm-2", 0)
	if a.MAC != again.MAC {
		t.Errorf("MAC of vm-1 changed with the slot: %s, %s", a.MAC, again.MAC)
	}
	if a.MAC == other.MAC {
		t.Errorf("vm-1 and vm-2 share MAC %s", a.MAC)
	}
	mac, err := net.ParseMAC(a.MAC)
	if err != nil || len(mac) != 6 {
		t.Fatalf("MAC %q is not a 48-bit MAC: %v", a.MAC, err)
	}
	if mac[0]&1 != 0 || mac[0]&2 == 0 {
		t.Errorf("MAC %s is not a locally administered unicast address", a.MAC)
	}
}

func TestPlanIsolated(t *testing.T) {
	g := isolatedGroup("sbox", func(n *config.Network) { n.Range = "10.200.0.0/22" })
	tests := []struct {
		slot      int
		addr, gw  string
		wantError error
	}{
		{slot: 0, addr: "10.200.0.2/30", gw: "10.200.0.1"},
		{slot: 1, addr: "10.200.0.6/30", gw: "10.200.0.5"},
		{slot: 255, addr: "10.200.3.254/30", gw: "10.200.3.253"},
		{slot: 256, wantError: api.ErrUnavailable},
	}
	for _, tt := range tests {
		p, err := PlanIsolated(g, "sbox-1", tt.slot, nil)
		if tt.wantError != nil {
			if !errors.Is(err, tt.wantError) {
				t.Errorf("slot %d: error = %v, want %v", tt.slot, err, tt.wantError)
			}
			continue
		}
		if err != nil {
			t.Fatalf("slot %d: %v", tt.slot, err)
		}
		if p.Guest.Address.String() != tt.addr || p.Guest.Gateway.String() != tt.gw {
			t.Errorf("slot %d: guest %s via %s, want %s via %s", tt.slot, p.Guest.Address, p.Guest.Gateway, tt.addr, tt.gw)
		}
		if p.TAP != "tap0" || p.Range.String() != "10.200.0.0/22" || p.Mode != ModeIsolated || p.Naming != NamingInstance {
			t.Errorf("slot %d: TAP %q, range %s, mode %q, naming %d", tt.slot, p.TAP, p.Range, p.Mode, p.Naming)
		}
	}
}

func TestPlanIsolatedDefaultRange(t *testing.T) {
	p, err := PlanIsolated(isolatedGroup("sbox", nil), "sbox-1", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p.Range != DefaultRange("sbox") || !p.Range.Contains(p.Guest.Address.Addr()) {
		t.Errorf("range %s, guest %s; want the default range %s", p.Range, p.Guest.Address, DefaultRange("sbox"))
	}
}

func TestPlanIsolatedErrors(t *testing.T) {
	tests := []struct {
		name     string
		vm       string
		mod      func(n *config.Network)
		override *api.CreateNodeNetworkPolicy
		errIs    error
		errPart  string
	}{
		{name: "VM name too long for the veth", vm: "sandbox-groups-1", errPart: "1 to 15 characters"},
		{name: "bad group entry", vm: "s-1", mod: func(n *config.Network) { n.Drop = []string{"nope"} },
			errIs: api.ErrInvalid, errPart: "network.drop[0]"},
		{name: "bad override entry", vm: "s-1", override: &api.CreateNodeNetworkPolicy{Allow: []string{"1.2.3.4", "1.2.3.4:0"}},
			errIs: api.ErrInvalid, errPart: "request network.allow[1]"},
		{name: "IPv6 entry", vm: "s-1", override: &api.CreateNodeNetworkPolicy{Drop: []string{"fd00::/8"}},
			errIs: api.ErrInvalid, errPart: "IPv4 only"},
		{name: "IPv6 range", vm: "s-1", mod: func(n *config.Network) { n.Range = "fd00::/64" }, errPart: "not an IPv4 CIDR"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := PlanIsolated(isolatedGroup("s", tt.mod), tt.vm, 0, tt.override)
			if err == nil || tt.errIs != nil && !errors.Is(err, tt.errIs) || !strings.Contains(err.Error(), tt.errPart) {
				t.Errorf("PlanIsolated() error = %v, want %v containing %q", err, tt.errIs, tt.errPart)
			}
		})
	}
}

func TestPlanFor(t *testing.T) {
	override := &api.CreateNodeNetworkPolicy{Allow: []string{}}
	if _, err := PlanFor(bridgeGroup(nil), "vm-1", 0, override); !errors.Is(err, api.ErrInvalid) {
		t.Errorf("override on a bridge group: error = %v, want ErrInvalid", err)
	}
	if _, err := PlanFor(config.HostGroup{Name: "x"}, "x-1", 0, override); !errors.Is(err, api.ErrInvalid) {
		t.Errorf("override on a group without network: error = %v, want ErrInvalid", err)
	}
	if _, err := PlanFor(config.HostGroup{Name: "x"}, "x-1", 0, nil); err == nil {
		t.Error("group without network: no error")
	}
	p, err := PlanFor(isolatedGroup("s", nil), "s-1", 0, override)
	if err != nil || p.Mode != ModeIsolated || p.Policy.Override != override {
		t.Errorf("PlanFor(isolated) = %+v, %v", p, err)
	}
	p, err = PlanFor(bridgeGroup(func(n *config.Network) { n.Mode = "" }), "vm-1", 0, nil)
	if err != nil || p.Mode != ModeBridge {
		t.Errorf("PlanFor(mode unset) = %q, %v; want bridge", p.Mode, err)
	}
}

func TestDefaultRange(t *testing.T) {
	linkLocal := netip.MustParsePrefix("169.254.0.0/16")
	metadata := netip.MustParseAddr("169.254.169.254")
	seen := map[netip.Prefix]bool{}
	for i := range 500 {
		name := "group" + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + string(rune('a'+i/26%26))
		r := DefaultRange(name)
		third := r.Addr().As4()[2]
		switch {
		case r.Bits() != 22 || r.Masked() != r || !linkLocal.Contains(r.Addr()):
			t.Fatalf("DefaultRange(%q) = %s, want an aligned /22 in 169.254.0.0/16", name, r)
		case r.Contains(metadata) || third < 4 || third >= 252:
			t.Fatalf("DefaultRange(%q) = %s, a reserved block", name, r)
		case DefaultRange(name) != r:
			t.Fatalf("DefaultRange(%q) is not deterministic", name)
		}
		seen[r] = true
	}
	if len(seen) < 50 {
		t.Errorf("500 names fell in only %d of 61 blocks", len(seen))
	}
}

func TestFreeSlot(t *testing.T) {
	for _, tt := range []struct {
		used []int
		want int
	}{{nil, 0}, {[]int{0, 1, 2}, 3}, {[]int{2, 0, 3}, 1}, {[]int{1}, 0}} {
		if got := FreeSlot(tt.used); got != tt.want {
			t.Errorf("FreeSlot(%v) = %d, want %d", tt.used, got, tt.want)
		}
	}
}

func TestKernelArg(t *testing.T) {
	p, err := PlanBridge(bridgeGroup(nil), "vm-1", 0)
	if err != nil {
		t.Fatal(err)
	}
	want := "ip=192.168.137.2::192.168.137.1:255.255.255.0:vm-1:eth0:off:8.8.8.8:1.1.1.1"
	if got := p.Guest.KernelArg("vm-1", "eth0"); got != want {
		t.Errorf("KernelArg() = %q, want %q", got, want)
	}
}

// A plan recorded before instance ids (with the veth name, without
// naming) reads as NamingLegacy; a plan recorded now keeps its naming.
func TestPlanJSONNaming(t *testing.T) {
	var old Plan
	if err := json.Unmarshal([]byte(`{"mode":"isolated","group":"sbox","vm":"sbox-1","slot":0,"tap":"tap0","host_veth":"sbox-1"}`), &old); err != nil {
		t.Fatal(err)
	}
	if old.Naming != NamingLegacy || old.VM != "sbox-1" {
		t.Errorf("old plan reads as %+v, want NamingLegacy", old)
	}
	p, err := PlanIsolated(isolatedGroup("sbox", nil), "sbox-1", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(p)
	var back Plan
	if err := json.Unmarshal(b, &back); err != nil || back.Naming != NamingInstance {
		t.Errorf("plan through JSON has naming %d (%v), want NamingInstance:\n%s", back.Naming, err, b)
	}
}
