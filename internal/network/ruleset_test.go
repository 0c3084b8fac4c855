package network

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/config"
)

// Plans recorded before instance ids get the tables they had.
func TestRulesetIsolatedLegacy(t *testing.T) {
	g := isolatedGroup("sbox", func(n *config.Network) {
		n.Range = "10.200.0.0/22"
		n.Drop = []string{"0.0.0.0/0"}
		n.Allow = []string{"192.168.222.1:3128"}
	})
	p, err := PlanIsolated(g, "sbox-1", 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := `table inet slicer-vm-sbox-1 {
	chain input {
		type filter hook input priority 0; policy accept;
		iifname "sbox-1" ct state established,related accept comment "slicer vm sbox-1: replies to the host"
		iifname "sbox-1" drop comment "slicer vm sbox-1: no access to the host"
	}
	chain forward {
		type filter hook forward priority 0; policy accept;
		oifname "sbox-1" ct state established,related accept comment "slicer vm sbox-1: replies to the VM"
		oifname "sbox-1" drop comment "slicer vm sbox-1: no connections into the VM"
		iifname "sbox-1" ct state established,related accept comment "slicer vm sbox-1: established"
		iifname "sbox-1" meta nfproto ipv6 drop comment "slicer vm sbox-1: no IPv6"
		iifname "sbox-1" ip saddr != 10.200.0.6 drop comment "slicer vm sbox-1: spoofed source"
		iifname "sbox-1" ip daddr 169.254.0.0/16 drop comment "slicer vm sbox-1: no link-local"
		iifname "sbox-1" ip daddr 192.168.222.1 tcp dport 3128 accept comment "slicer vm sbox-1: allow 192.168.222.1:3128"
		iifname "sbox-1" ip daddr 192.168.222.1 udp dport 3128 accept comment "slicer vm sbox-1: allow 192.168.222.1:3128"
		iifname "sbox-1" ip daddr 0.0.0.0/0 drop comment "slicer vm sbox-1: drop 0.0.0.0/0"
	}
	chain postrouting {
		type nat hook postrouting priority 100; policy accept;
		oifname != "sbox-1" ip saddr 10.200.0.6 masquerade comment "slicer vm sbox-1: egress NAT"
	}
}
`
	if diff := cmp.Diff(want, ruleset(legacyTest, p).String()); diff != "" {
		t.Errorf("ruleset() (-want +got):\n%s", diff)
	}
}

// The instance id names the table and the veth, and begins every comment.
func TestRulesetIsolated(t *testing.T) {
	g := isolatedGroup("sbox", func(n *config.Network) {
		n.Range = "10.200.0.0/22"
		n.Drop = []string{"0.0.0.0/0"}
	})
	p, err := PlanIsolated(g, "sbox-1", 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	veth := testOwner.hostVeth("sbox-1")
	want := strings.ReplaceAll(`table inet slicer-0a1b2c3d-vm-sbox-1 {
	chain input {
		type filter hook input priority 0; policy accept;
		iifname "VETH" ct state established,related accept comment "slicer/0a1b2c3d vm sbox-1: replies to the host"
		iifname "VETH" drop comment "slicer/0a1b2c3d vm sbox-1: no access to the host"
	}
	chain forward {
		type filter hook forward priority 0; policy accept;
		oifname "VETH" ct state established,related accept comment "slicer/0a1b2c3d vm sbox-1: replies to the VM"
		oifname "VETH" drop comment "slicer/0a1b2c3d vm sbox-1: no connections into the VM"
		iifname "VETH" ct state established,related accept comment "slicer/0a1b2c3d vm sbox-1: established"
		iifname "VETH" meta nfproto ipv6 drop comment "slicer/0a1b2c3d vm sbox-1: no IPv6"
		iifname "VETH" ip saddr != 10.200.0.6 drop comment "slicer/0a1b2c3d vm sbox-1: spoofed source"
		iifname "VETH" ip daddr 169.254.0.0/16 drop comment "slicer/0a1b2c3d vm sbox-1: no link-local"
		iifname "VETH" ip daddr 0.0.0.0/0 drop comment "slicer/0a1b2c3d vm sbox-1: drop 0.0.0.0/0"
	}
	chain postrouting {
		type nat hook postrouting priority 100; policy accept;
		oifname != "VETH" ip saddr 10.200.0.6 masquerade comment "slicer/0a1b2c3d vm sbox-1: egress NAT"
	}
}
`, "VETH", veth)
	if diff := cmp.Diff(want, ruleset(testOwner, p).String()); diff != "" {
		t.Errorf("ruleset() (-want +got):\n%s", diff)
	}
}

func TestRulesetBridge(t *testing.T) {
	p, err := PlanBridge(bridgeGroup(nil), "vm-3", 2)
	if err != nil {
		t.Fatal(err)
	}
	want := `table inet slicer-0a1b2c3d-group-vm {
	chain postrouting {
		type nat hook postrouting priority 100; policy accept;
		oifname != "brvm0" ip saddr 192.168.137.0/24 masquerade comment "slicer/0a1b2c3d group vm: egress NAT"
	}
}
`
	if diff := cmp.Diff(want, ruleset(testOwner, p).String()); diff != "" {
		t.Errorf("ruleset() (-want +got):\n%s", diff)
	}
	if got := ruleset(legacyTest, p).Name; got != "slicer-group-vm" {
		t.Errorf("legacy group table %q, want slicer-group-vm", got)
	}
	other, _ := PlanBridge(bridgeGroup(nil), "vm-9", 7)
	if ruleset(testOwner, other).String() != ruleset(testOwner, p).String() {
		t.Error("two VMs of one bridge group have different group tables")
	}
}

// An override changes one VM's table and no other's.
func TestRulesetOverride(t *testing.T) {
	g := isolatedGroup("sbox", func(n *config.Network) { n.Drop = []string{"0.0.0.0/0"} })
	a, _ := PlanIsolated(g, "sbox-1", 0, nil)
	b, err := PlanIsolated(g, "sbox-2", 1, &api.CreateNodeNetworkPolicy{Drop: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(ruleset(testOwner, a).String(), "ip daddr 0.0.0.0/0 drop") {
		t.Error("sbox-1 lost the group's drop")
	}
	if strings.Contains(ruleset(testOwner, b).String(), "ip daddr 0.0.0.0/0 drop") {
		t.Error("sbox-2's cleared drop list is still enforced")
	}
}
