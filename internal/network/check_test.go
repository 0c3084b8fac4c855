package network

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/openslicer/openslicer/internal/config"
)

func TestCheckGroups(t *testing.T) {
	pfx := netip.MustParsePrefix
	eth0 := hostLink{Name: "eth0", Kind: "device", Addrs: []netip.Prefix{pfx("10.0.2.15/24"), pfx("fe80::1/64")}}
	bridge := bridgeGroup(nil)
	isolated := isolatedGroup("sbox", func(n *config.Network) { n.Range = "10.200.0.0/22" })
	defaulted := isolatedGroup("sbox", nil)
	tests := []struct {
		name   string
		groups []config.HostGroup
		links  []hostLink
		want   []string // parts of the error; none means no error
	}{
		{name: "free host", groups: []config.HostGroup{bridge, isolated}, links: []hostLink{eth0}},
		{name: "groups without network need nothing", groups: []config.HostGroup{{Name: "x"}}, links: []hostLink{eth0}},
		{name: "gateway network in use", groups: []config.HostGroup{bridge},
			links: []hostLink{eth0, {Name: "wlan0", Kind: "device", Addrs: []netip.Prefix{pfx("192.168.137.20/24")}}},
			want:  []string{`host group "vm"`, "network.gateway 192.168.137.1/24 overlaps 192.168.137.20/24, already on wlan0"}},
		{name: "bridge exists with the gateway", groups: []config.HostGroup{bridge},
			links: []hostLink{eth0, {Name: "brvm0", Kind: "bridge", Addrs: []netip.Prefix{pfx("192.168.137.1/24")}}}},
		{name: "bridge exists without an address", groups: []config.HostGroup{bridge},
			links: []hostLink{{Name: "brvm0", Kind: "bridge"}}},
		{name: "bridge exists with another address", groups: []config.HostGroup{bridge},
			links: []hostLink{{Name: "brvm0", Kind: "bridge", Addrs: []netip.Prefix{pfx("10.9.0.1/24")}}},
			want:  []string{"bridge brvm0 exists with address 10.9.0.1/24, not the gateway 192.168.137.1/24", "set network.gateway to 10.9.0.1/24", "ip link del brvm0"}},
		{name: "bridge name taken by another kind", groups: []config.HostGroup{bridge},
			links: []hostLink{{Name: "brvm0", Kind: "veth"}},
			want:  []string{`network.bridge "brvm0" names an existing veth device`}},
		{name: "range in use", groups: []config.HostGroup{isolated},
			links: []hostLink{{Name: "tun0", Kind: "tuntap", Addrs: []netip.Prefix{pfx("10.200.1.1/32")}}},
			want:  []string{"network.range overlaps 10.200.1.1/32, already on tun0"}},
		{name: "default range in use", groups: []config.HostGroup{defaulted},
			links: []hostLink{{Name: "eth1", Kind: "device", Addrs: []netip.Prefix{netip.PrefixFrom(DefaultRange("sbox").Addr().Next(), 24)}}},
			want:  []string{"the default range (set network.range to choose another) overlaps"}},
		{name: "the daemon's own leftovers are no obstacle", groups: []config.HostGroup{isolated},
			links: []hostLink{{Name: "slvc4y6qd3vhm3m", Kind: "veth", Owner: mine, Addrs: []netip.Prefix{pfx("10.200.0.1/30")}}}},
		{name: "an earlier version's devices are no obstacle (they may be this daemon's VMs)", groups: []config.HostGroup{isolated},
			links: []hostLink{{Name: "sbox-1", Kind: "veth", Owner: legacyName, Addrs: []netip.Prefix{pfx("10.200.0.1/30")}}}},
		{name: "another daemon's VM on the range", groups: []config.HostGroup{isolated},
			links: []hostLink{{Name: "slvmx6pqxvtgr4q", Kind: "veth", Owner: otherOwner, Instance: "9f8e7d6c", Addrs: []netip.Prefix{pfx("10.200.0.1/30")}}},
			want:  []string{"network.range overlaps 10.200.0.1/30, already on slvmx6pqxvtgr4q"}},
		{name: "bridge of another daemon", groups: []config.HostGroup{bridge},
			links: []hostLink{{Name: "brvm0", Kind: "bridge", Owner: otherOwner, Instance: "9f8e7d6c", Addrs: []netip.Prefix{pfx("192.168.137.1/24")}}},
			want:  []string{`host group "vm": bridge brvm0 belongs to another slicer daemon (instance 9f8e7d6c): give this group its own network.bridge`}},
		{name: "the admin's bridge carries another daemon's VMs", groups: []config.HostGroup{bridge},
			links: []hostLink{
				{Name: "brvm0", Kind: "bridge", Addrs: []netip.Prefix{pfx("192.168.137.1/24")}},
				{Name: "othertap0", Kind: "tuntap", Master: "brvm0", Owner: otherOwner, Instance: "9f8e7d6c"},
			},
			want: []string{"bridge brvm0 carries othertap0 of another slicer daemon (instance 9f8e7d6c)"}},
		{name: "a TAP name of another daemon", groups: []config.HostGroup{bridge},
			links: []hostLink{{Name: "vmtap3", Kind: "tuntap", Owner: otherOwner, Instance: "9f8e7d6c"}},
			want:  []string{"device vmtap3 has the name of one of the group's TAPs and belongs to another slicer daemon (instance 9f8e7d6c)", "another network.tap_prefix"}},
		{name: "a TAP name not made by slicer", groups: []config.HostGroup{bridge},
			links: []hostLink{{Name: "vmtap0", Kind: "tuntap"}},
			want:  []string{"device vmtap0 has the name of one of the group's TAPs and was not made by slicer", "ip link del vmtap0"}},
		{name: "the daemon's own and earlier TAPs are no obstacle", groups: []config.HostGroup{bridge},
			links: []hostLink{{Name: "vmtap0", Kind: "tuntap", Owner: mine}, {Name: "vmtap1", Kind: "tuntap", Owner: legacyName}}},
		{name: "names that only begin like a TAP", groups: []config.HostGroup{bridge},
			links: []hostLink{{Name: "vmtap", Kind: "tuntap"}, {Name: "vmtapx1", Kind: "tuntap"}}},
		{name: "two groups on one network", groups: []config.HostGroup{isolated, isolatedGroup("other", func(n *config.Network) { n.Range = "10.200.2.0/23" })},
			want: []string{`host groups "sbox" and "other" both use 10.200.2.0/23`}},
		{name: "a bad group is reported", groups: []config.HostGroup{bridgeGroup(func(n *config.Network) { n.Gateway = "nope" })},
			want: []string{"network.gateway \"nope\" is not an IPv4 CIDR"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkGroups(tt.groups, tt.links)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("checkGroups() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("checkGroups() = nil, want an error with %q", tt.want)
			}
			for _, part := range tt.want {
				if !strings.Contains(err.Error(), part) {
					t.Errorf("checkGroups() = %v\nwant it to contain %q", err, part)
				}
			}
		})
	}
}
