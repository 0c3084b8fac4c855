package guest

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/agent"
	"github.com/openslicer/openslicer/internal/guest/sysconf"
)

func TestIdentityOf(t *testing.T) {
	entropy := bytes.Repeat([]byte{7}, agent.MinEntropy)
	nw := &agent.Network{Device: "eth0", Address: netip.MustParsePrefix("10.0.0.2/24"),
		Gateway: netip.MustParseAddr("10.0.0.1"), DNS: []netip.Addr{netip.MustParseAddr("10.0.0.53")}}
	for _, tc := range []struct {
		name string
		req  agent.Identity
		want sysconf.Identity
		bad  bool
	}{
		{name: "empty", req: agent.Identity{}},
		{name: "all", req: agent.Identity{Hostname: "sbox-2", Network: nw, MachineID: "0123456789abcdef0123456789abcdef", Entropy: entropy},
			want: sysconf.Identity{Hostname: "sbox-2", MachineID: "0123456789abcdef0123456789abcdef", Entropy: entropy,
				Network: &sysconf.Network{Device: "eth0", Address: nw.Address, Gateway: nw.Gateway, DNS: nw.DNS}}},
		{name: "too little entropy", req: agent.Identity{Entropy: entropy[:agent.MinEntropy-1]}, bad: true},
		{name: "too much entropy", req: agent.Identity{Entropy: make([]byte, agent.MaxEntropy+1)}, bad: true},
		{name: "bad hostname", req: agent.Identity{Hostname: "a b"}, bad: true},
		{name: "bad machine id", req: agent.Identity{MachineID: "nope"}, bad: true},
		{name: "network without address", req: agent.Identity{Network: &agent.Network{}}, bad: true},
		{name: "mac", req: agent.Identity{Network: &agent.Network{Address: nw.Address, MAC: "02:AB:00:00:00:01"}},
			want: sysconf.Identity{Network: &sysconf.Network{Address: nw.Address, MAC: net.HardwareAddr{2, 0xab, 0, 0, 0, 1}}}},
		{name: "mac not an address", req: agent.Identity{Network: &agent.Network{Address: nw.Address, MAC: "nope"}}, bad: true},
		{name: "multicast mac", req: agent.Identity{Network: &agent.Network{Address: nw.Address, MAC: "01:00:5e:00:00:01"}}, bad: true},
		{name: "zero mac", req: agent.Identity{Network: &agent.Network{Address: nw.Address, MAC: "00:00:00:00:00:00"}}, bad: true},
		{name: "infiniband mac", req: agent.Identity{Network: &agent.Network{Address: nw.Address,
			MAC: "00:00:00:00:fe:80:00:00:00:00:00:00:02:00:5e:10:00:00:00:01"}}, bad: true},
	} {
		got, err := identityOf(tc.req)
		if tc.bad {
			if !errors.Is(err, api.ErrInvalid) {
				t.Errorf("%s: identityOf = %v, want ErrInvalid", tc.name, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: identityOf: %v", tc.name, err)
			continue
		}
		if diff := cmp.Diff(tc.want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
			cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
			t.Errorf("%s: identityOf (-want +got):\n%s", tc.name, diff)
		}
	}
}

func TestPowerActionOf(t *testing.T) {
	for in, ok := range map[string]bool{"poweroff": true, "reboot": true, "": false, "halt": false, "PowerOff": false} {
		got, err := powerActionOf(agent.Power{Action: in})
		if ok && (err != nil || got != in) || !ok && !errors.Is(err, api.ErrInvalid) {
			t.Errorf("powerActionOf(%q) = %q, %v; want accepted %v", in, got, err, ok)
		}
	}
}
