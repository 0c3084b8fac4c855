package daemon

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/openslicer/openslicer/internal/config"
)

// VMCommands returns the subcommands of `slicer vm` that read this host's
// config rather than ask the API: route.
func VMCommands(out io.Writer) []*cobra.Command {
	return []*cobra.Command{routeCommand(out)}
}

// routeCommand is `slicer vm route CONFIG [--os linux|darwin] [--via IP]`.
func routeCommand(out io.Writer) *cobra.Command {
	var goos, via string
	cmd := &cobra.Command{
		Use:   "route CONFIG",
		Short: "Print the route commands another host needs to reach this host's bridge-mode VMs",
		Long: "Print, for each bridge-mode host group in CONFIG, the command that routes its\n" +
			"subnet through this host (ip route add on Linux, route -n add on macOS).\n" +
			"Isolated groups are not routable from other hosts. --via defaults to this\n" +
			"host's address on its default route.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := config.LoadAndValidate(args[0], defaultHypervisor(), config.ValidateOptions{BaseDir: filepath.Dir(args[0])})
			if err != nil {
				return err
			}
			gw, err := routeVia(via)
			if err != nil {
				return err
			}
			lines, err := routeLines(cfg.HostGroups, goos, gw)
			if err != nil {
				return err
			}
			_, err = io.WriteString(out, strings.Join(lines, "\n")+"\n")
			return err
		},
	}
	cmd.Flags().StringVar(&goos, "os", "linux", "the other host's system: linux or darwin")
	cmd.Flags().StringVar(&via, "via", "", "this host's address as the other host sees it (default: the address of the default route)")
	return cmd
}

// routeVia parses --via, or finds the local address the default route
// uses (connecting a UDP socket sends nothing).
func routeVia(given string) (netip.Addr, error) {
	if given != "" {
		a, err := netip.ParseAddr(given)
		if err != nil || !a.Is4() {
			return netip.Addr{}, fmt.Errorf("--via %q: want this host's IPv4 address", given)
		}
		return a, nil
	}
	c, err := net.Dial("udp4", "192.0.2.1:9")
	if err != nil {
		return netip.Addr{}, fmt.Errorf("find this host's address (%v): pass --via IP", err)
	}
	defer c.Close()
	ap, err := netip.ParseAddrPort(c.LocalAddr().String())
	if err != nil {
		return netip.Addr{}, fmt.Errorf("find this host's address (%v): pass --via IP", err)
	}
	return ap.Addr(), nil
}

// routeLines are the commands (and comments) routing each bridge group's
// subnet via this host's address via, for the other host's system goos.
func routeLines(groups []config.HostGroup, goos string, via netip.Addr) ([]string, error) {
	var route func(netip.Prefix) string
	switch goos {
	case "linux":
		route = func(p netip.Prefix) string { return fmt.Sprintf("ip route add %s via %s", p, via) }
	case "darwin":
		route = func(p netip.Prefix) string { return fmt.Sprintf("route -n add -net %s %s", p, via) }
	default:
		return nil, fmt.Errorf("--os %q: want linux or darwin", goos)
	}
	lines := []string{fmt.Sprintf("# Run as root on the other host, to reach this host's VMs through %s:", via)}
	for _, g := range groups {
		n := g.Network
		switch {
		case n == nil:
			lines = append(lines, fmt.Sprintf("# host group %q has no network", g.Name))
		case n.Mode == "isolated":
			lines = append(lines, fmt.Sprintf("# host group %q is isolated: its VMs are not routable from other hosts", g.Name))
		default:
			gw, err := netip.ParsePrefix(n.Gateway)
			if err != nil {
				return nil, fmt.Errorf("host group %q: network.gateway %q: %w", g.Name, n.Gateway, err)
			}
			lines = append(lines, route(gw.Masked()))
		}
	}
	return lines, nil
}
