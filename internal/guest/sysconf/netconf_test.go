package sysconf

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseIPParam(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Network
		wantErr bool
	}{
		{
			in: "192.168.137.2::192.168.137.1:255.255.255.0:vm-1:eth0:off:8.8.8.8:1.1.1.1",
			want: Network{Device: "eth0", Address: netip.MustParsePrefix("192.168.137.2/24"),
				Gateway: netip.MustParseAddr("192.168.137.1"),
				DNS:     []netip.Addr{netip.MustParseAddr("8.8.8.8"), netip.MustParseAddr("1.1.1.1")}},
		},
		{
			in: "169.254.8.2::169.254.8.1:255.255.255.252:sb-1:eth0:off",
			want: Network{Device: "eth0", Address: netip.MustParsePrefix("169.254.8.2/30"),
				Gateway: netip.MustParseAddr("169.254.8.1")},
		},
		{in: "dhcp", wantErr: true},
		{in: "10.0.0.2::10.0.0.1:255.0.255.0:h:eth0:off", wantErr: true},
		{in: "10.0.0.2::10.0.0.1:255.255.255.0:h:eth0:dhcp", wantErr: true},
		{in: "10.0.0.2::nope:255.255.255.0:h:eth0:off", wantErr: true},
		{in: "10.0.0.2::10.0.0.1:255.255.255.0:h:eth0:off:x", wantErr: true},
	} {
		got, err := parseIPParam(tc.in)
		if (err != nil) != tc.wantErr {
			t.Errorf("parseIPParam(%q) error = %v, want error %v", tc.in, err, tc.wantErr)
			continue
		}
		if diff := cmp.Diff(tc.want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
			cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); !tc.wantErr && diff != "" {
			t.Errorf("parseIPParam(%q) (-want +got):\n%s", tc.in, diff)
		}
	}
}

func TestResolvConf(t *testing.T) {
	got := resolvConf([]netip.Addr{netip.MustParseAddr("10.0.0.53"), netip.MustParseAddr("1.1.1.1")})
	want := "# written by slicer-agent from the host group's dns_servers\nnameserver 10.0.0.53\nnameserver 1.1.1.1\n"
	if got != want {
		t.Errorf("resolvConf = %q, want %q", got, want)
	}
}
