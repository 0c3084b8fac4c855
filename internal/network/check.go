package network

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/openslicer/openslicer/internal/config"
)

// hostLink is a host interface as CheckHost sees it.
type hostLink struct {
	Name  string
	Kind  string // netlink kind, e.g. "bridge", "veth", "device"
	Ours  bool   // it carries one of this daemon's aliases
	Addrs []netip.Prefix
}

// checkGroups reports, for every networked group, what on the host stands
// in its way: each problem in one sentence that names the fix. Devices the
// daemon made itself (Ours) are leftovers it reclaims, not obstacles.
func checkGroups(groups []config.HostGroup, links []hostLink) error {
	var errs []error
	type claim struct {
		group string
		net   netip.Prefix
	}
	var claims []claim
	for _, g := range groups {
		if g.Network == nil {
			continue
		}
		p, err := PlanFor(g, g.Hostname(1), 0, nil)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var net netip.Prefix
		switch p.Mode {
		case ModeBridge:
			net = p.Guest.Address.Masked()
			errs = append(errs, checkBridge(g.Name, p, links)...)
		case ModeIsolated:
			net = p.Range
			what := "network.range"
			if g.Network.Range == "" {
				what = "the default range (set network.range to choose another)"
			}
			errs = append(errs, overlaps(g.Name, net, what, "", links)...)
		}
		for _, c := range claims {
			if c.net.Overlaps(net) {
				errs = append(errs, fmt.Errorf("host groups %q and %q both use %s: give one of them another network.range or network.gateway", c.group, g.Name, net))
			}
		}
		claims = append(claims, claim{g.Name, net})
	}
	return errors.Join(errs...)
}

// checkBridge checks a bridge group: an existing device of the bridge's
// name must be a bridge holding the gateway (or no IPv4 address yet), and
// the gateway's network must be free elsewhere on the host.
func checkBridge(group string, p Plan, links []hostLink) []error {
	gw := p.Guest.GatewayPrefix()
	var errs []error
	for _, l := range links {
		if l.Name != p.Bridge {
			continue
		}
		if l.Kind != "bridge" {
			errs = append(errs, fmt.Errorf("host group %q: network.bridge %q names an existing %s device, not a bridge: choose another network.bridge or remove the device", group, p.Bridge, l.Kind))
			continue
		}
		var v4 []netip.Prefix
		for _, a := range l.Addrs {
			if a.Addr().Is4() {
				v4 = append(v4, a)
			}
		}
		if len(v4) > 0 && !slices.Contains(v4, gw) {
			errs = append(errs, fmt.Errorf("host group %q: bridge %s exists with address %s, not the gateway %s: set network.gateway to %s, or remove the bridge (ip link del %s)", group, p.Bridge, v4[0], gw, v4[0], p.Bridge))
		}
	}
	return append(errs, overlaps(group, gw.Masked(), "network.gateway "+gw.String(), p.Bridge, links)...)
}

// overlaps reports host addresses inside net, except on the device skip
// and on devices the daemon owns.
func overlaps(group string, net netip.Prefix, what, skip string, links []hostLink) []error {
	var errs []error
	for _, l := range links {
		if l.Ours || l.Name == skip {
			continue
		}
		for _, a := range l.Addrs {
			if a.Addr().Is4() && a.Masked().Overlaps(net) {
				errs = append(errs, fmt.Errorf("host group %q: %s overlaps %s, already on %s: choose a network that is free on this host", group, what, a, l.Name))
			}
		}
	}
	return errs
}
