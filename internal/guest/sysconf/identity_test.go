package sysconf

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestIdentityCheck(t *testing.T) {
	net := func(dev, addr, gw string) *Network {
		n := &Network{Device: dev, Address: netip.MustParsePrefix(addr)}
		if gw != "" {
			n.Gateway = netip.MustParseAddr(gw)
		}
		return n
	}
	for _, tc := range []struct {
		name string
		id   Identity
		bad  []string // substrings of the error; none: valid
	}{
		{"empty", Identity{}, nil},
		{"all", Identity{Hostname: "sbox-1", MachineID: "0123456789abcdef0123456789abcdef", Network: net("eth0", "10.0.0.2/24", "10.0.0.1")}, nil},
		{"fqdn", Identity{Hostname: "a-1.example.com"}, nil},
		{"hostname underscore", Identity{Hostname: "a_1"}, []string{`"a_1"`}},
		{"hostname leading hyphen", Identity{Hostname: "-a"}, []string{"inner hyphens"}},
		{"hostname empty label", Identity{Hostname: "a..b"}, []string{"labels"}},
		{"hostname too long", Identity{Hostname: strings.Repeat("a", 65)}, []string{"longer than 64"}},
		{"machine id upper", Identity{MachineID: "0123456789ABCDEF0123456789abcdef"}, []string{"machine id"}},
		{"machine id short", Identity{MachineID: "0123"}, []string{"machine id"}},
		{"machine id zero", Identity{MachineID: strings.Repeat("0", 32)}, []string{"not all zero"}},
		{"ipv6 address", Identity{Network: net("", "fd00::2/64", "")}, []string{"IPv4"}},
		{"no length", Identity{Network: net("", "10.0.0.2/0", "")}, []string{"length"}},
		{"bad device", Identity{Network: net("eth0/x", "10.0.0.2/24", "")}, []string{"interface name"}},
		{"ipv6 gateway", Identity{Network: net("", "10.0.0.2/24", "fd00::1")}, []string{"gateway"}},
		{"every problem", Identity{Hostname: "a_b", MachineID: "x", Network: net("", "10.0.0.2/0", "")}, []string{"hostname", "machine id", "network address"}},
	} {
		err := tc.id.Check()
		if len(tc.bad) == 0 {
			if err != nil {
				t.Errorf("%s: Check = %v, want nil", tc.name, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("%s: Check = nil, want an error naming %q", tc.name, tc.bad)
			continue
		}
		for _, s := range tc.bad {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("%s: Check = %v, want it to mention %q", tc.name, err, s)
			}
		}
	}
}

func TestIdentityFiles(t *testing.T) {
	const id = "0123456789abcdef0123456789abcdef"
	dns := &Network{Address: netip.MustParsePrefix("10.0.0.2/24"), DNS: []netip.Addr{netip.MustParseAddr("10.0.0.53")}}
	for _, tc := range []struct {
		name     string
		id       Identity
		dbusCopy bool
		want     []File
	}{
		{"nothing", Identity{}, true, nil},
		{"hostname", Identity{Hostname: "h-1"}, false, []File{{"/etc/hostname", "h-1\n", 0o644}}},
		{"network without dns writes no resolv.conf", Identity{Network: &Network{Address: netip.MustParsePrefix("10.0.0.2/24")}}, false, nil},
		{"dns", Identity{Network: dns}, false, []File{{"/etc/resolv.conf", resolvConf(dns.DNS), 0o644}}},
		{"machine id", Identity{MachineID: id}, false, []File{{"/etc/machine-id", id + "\n", 0o444}}},
		{"machine id and dbus's copy", Identity{MachineID: id}, true, []File{
			{"/etc/machine-id", id + "\n", 0o444}, {"/var/lib/dbus/machine-id", id + "\n", 0o444}}},
		{"all, in order", Identity{Hostname: "h", Network: dns, MachineID: id, Entropy: []byte{1}}, false, []File{
			{"/etc/hostname", "h\n", 0o644}, {"/etc/resolv.conf", resolvConf(dns.DNS), 0o644}, {"/etc/machine-id", id + "\n", 0o444}}},
	} {
		if diff := cmp.Diff(tc.want, tc.id.Files(tc.dbusCopy)); diff != "" {
			t.Errorf("%s: Files (-want +got):\n%s", tc.name, diff)
		}
	}
}

func TestStaleAddresses(t *testing.T) {
	p := netip.MustParsePrefix
	want := p("10.0.0.2/24")
	for _, tc := range []struct {
		have, stale []netip.Prefix
	}{
		{nil, nil},
		{[]netip.Prefix{want}, nil},
		{[]netip.Prefix{p("10.0.0.2/16")}, []netip.Prefix{p("10.0.0.2/16")}}, // same address, other length
		{[]netip.Prefix{p("10.9.0.2/24"), want, p("10.0.0.3/24")}, []netip.Prefix{p("10.9.0.2/24"), p("10.0.0.3/24")}},
	} {
		got := staleAddresses(tc.have, want)
		if !cmp.Equal(got, tc.stale, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })) {
			t.Errorf("staleAddresses(%v) = %v, want %v", tc.have, got, tc.stale)
		}
	}
}

func TestHosts(t *testing.T) {
	for _, c := range []struct{ name, cur, old, new, want string }{
		{"no file", "", "", "vm-1", "127.0.1.1\tvm-1\n"},
		{"renamed entry", "127.0.0.1 localhost\n127.0.1.1 tpl\n", "tpl", "vm-1", "127.0.0.1 localhost\n127.0.1.1\tvm-1\n"},
		{"among names, case, comment kept", "10.0.0.2\tTPL tpl.local # mine\n", "tpl", "vm-1", "10.0.0.2\tvm-1 tpl.local # mine\n"},
		{"named already, on any line", "127.0.0.1 localhost\n10.0.0.2 vm-1 vm-1.local\n", "tpl", "vm-1", "127.0.0.1 localhost\n10.0.0.2 vm-1 vm-1.local\n"},
		{"a comment naming it does not count, nor does an address", "# vm-1 lives here\nvm-1 other\n", "", "vm-1", "# vm-1 lives here\nvm-1 other\n127.0.1.1\tvm-1\n"},
		{"boot, debian image: the image's own name is replaced", "127.0.0.1\tlocalhost\n127.0.1.1\tdebian\n::1\tlocalhost ip6-localhost\n", "", "vm-1",
			"127.0.0.1\tlocalhost\n127.0.1.1\tvm-1\n::1\tlocalhost ip6-localhost\n"},
		{"boot, no line for it, no newline at the end", "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback", "", "vm-1",
			"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\tvm-1\n"},
		{"rename where the old name is absent: the 127.0.1.1 line", "127.0.1.1 debian\n", "tpl", "vm-1", "127.0.1.1\tvm-1\n"},
	} {
		if got := Hosts(c.cur, c.old, c.new); got != c.want {
			t.Errorf("%s: Hosts(%q, %q, %q) = %q, want %q", c.name, c.cur, c.old, c.new, got, c.want)
		}
	}
}
