package network

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/openslicer/openslicer/internal/config"
)

// hostLink is a host interface as CheckHost sees it.
type hostLink struct {
	Name   string
	Kind   string // netlink kind, e.g. "bridge", "veth", "device"
	Master string // the bridge it is a port of, if any
	// Owner is who made it, by its alias; Instance is the other daemon's
	// id when Owner is otherOwner.
	Owner    ownership
	Instance string
	Addrs    []netip.Prefix
}

// maybeOurs reports whether l may be this daemon's: its own (a leftover it
// reclaims, or a live VM's), or an earlier version's (which may be one of
// its own VMs, re-attached after an upgrade).
func (l hostLink) maybeOurs() bool { return l.Owner == mine || l.Owner == legacyName }

// checkGroups reports, for every networked group, what on the host stands
// in its way: each problem in one sentence that names the fix. Devices the
// daemon made itself are leftovers it reclaims, not obstacles; devices of
// another daemon are, and so is a device with the name of one of the
// group's TAPs that this daemon did not make.
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
			errs = append(errs, checkTAPs(g.Name, g.Network.TapPrefix, p.Bridge, links)...)
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
		if l.Owner == otherOwner {
			errs = append(errs, fmt.Errorf("host group %q: bridge %s belongs to another slicer daemon (instance %s): give this group its own network.bridge and network.gateway", group, p.Bridge, l.Instance))
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
	for _, l := range links {
		if l.Master == p.Bridge && l.Owner == otherOwner {
			errs = append(errs, fmt.Errorf("host group %q: bridge %s carries %s of another slicer daemon (instance %s): give this group its own network.bridge and network.gateway", group, p.Bridge, l.Name, l.Instance))
			break
		}
	}
	return append(errs, overlaps(group, gw.Masked(), "network.gateway "+gw.String(), p.Bridge, links)...)
}

// checkTAPs reports devices named like the group's TAPs (the prefix and a
// number) that this daemon did not make: creating a VM in that slot would
// fail.
func checkTAPs(group, prefix, bridge string, links []hostLink) []error {
	var errs []error
	for _, l := range links {
		n, ok := strings.CutPrefix(l.Name, prefix)
		if !ok || n == "" || strings.Trim(n, "0123456789") != "" || l.maybeOurs() || l.Name == bridge {
			continue
		}
		who := "was not made by slicer"
		if l.Owner == otherOwner {
			who = "belongs to another slicer daemon (instance " + l.Instance + ")"
		}
		errs = append(errs, fmt.Errorf("host group %q: device %s has the name of one of the group's TAPs and %s: give this group another network.tap_prefix, or remove the device (ip link del %s)", group, l.Name, who, l.Name))
	}
	return errs
}

// overlaps reports host addresses inside net, except on the device skip
// and on devices that may be the daemon's own.
func overlaps(group string, net netip.Prefix, what, skip string, links []hostLink) []error {
	var errs []error
	for _, l := range links {
		if l.maybeOurs() || l.Name == skip {
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
