package daemon

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openslicer/openslicer/internal/config"
)

func TestRouteLines(t *testing.T) {
	groups := []config.HostGroup{
		{Name: "web", Network: &config.Network{Mode: "bridge", Gateway: "192.168.137.1/24"}},
		{Name: "ci", Network: &config.Network{Mode: "isolated"}},
		{Name: "plain"},
		{Name: "db", Network: &config.Network{Gateway: "10.20.30.1/28"}},
	}
	via := netip.MustParseAddr("192.168.1.10")
	tests := []struct {
		goos string
		want []string
	}{
		{"linux", []string{
			"# Run as root on the other host, to reach this host's VMs through 192.168.1.10:",
			"ip route add 192.168.137.0/24 via 192.168.1.10",
			`# host group "ci" is isolated: its VMs are not routable from other hosts`,
			`# host group "plain" has no network`,
			"ip route add 10.20.30.0/28 via 192.168.1.10",
		}},
		{"darwin", []string{
			"# Run as root on the other host, to reach this host's VMs through 192.168.1.10:",
			"route -n add -net 192.168.137.0/24 192.168.1.10",
			`# host group "ci" is isolated: its VMs are not routable from other hosts`,
			`# host group "plain" has no network`,
			"route -n add -net 10.20.30.0/28 192.168.1.10",
		}},
	}
	for _, tt := range tests {
		got, err := routeLines(groups, tt.goos, via)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%s mismatch (-want +got):\n%s", tt.goos, diff)
		}
	}
	if _, err := routeLines(groups, "windows", via); err == nil || !strings.Contains(err.Error(), "linux or darwin") {
		t.Errorf("--os windows: %v", err)
	}
}

func TestRouteCommand(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "slicer.yaml")
	yaml := "config:\n  host_groups:\n  - name: web\n    network:\n      gateway: 192.168.140.1/24\n"
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	cmd := routeCommand(&out)
	cmd.SetArgs([]string{cfg, "--via", "10.0.0.5"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	want := "# Run as root on the other host, to reach this host's VMs through 10.0.0.5:\nip route add 192.168.140.0/24 via 10.0.0.5\n"
	if out.String() != want {
		t.Errorf("output %q; want %q", out.String(), want)
	}
	for _, args := range [][]string{{cfg, "--via", "fd00::1"}, {cfg, "--os", "plan9", "--via", "10.0.0.5"}, {filepath.Join(t.TempDir(), "none.yaml")}} {
		cmd := routeCommand(&bytes.Buffer{})
		cmd.SetArgs(args)
		cmd.SilenceUsage, cmd.SilenceErrors = true, true
		if err := cmd.Execute(); err == nil {
			t.Errorf("%v succeeded", args)
		}
	}
}
