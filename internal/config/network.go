package config

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Rule is one isolated-mode allow or drop entry: a prefix and an optional
// destination port (0 = every port).
type Rule struct {
	Prefix netip.Prefix
	Port   uint16
}

// ParseRule parses an allow/drop entry: a CIDR ("10.0.0.0/8", masked to its
// network), an IP ("1.1.1.1"), or either with a port ("1.1.1.1:53",
// "10.0.0.0/8:443", "[fd00::1]:53").
func ParseRule(s string) (Rule, error) {
	bad := fmt.Errorf("%q is not a CIDR, IP or IP:port", s)
	if p, err := netip.ParsePrefix(s); err == nil {
		return Rule{Prefix: p.Masked()}, nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return Rule{Prefix: netip.PrefixFrom(a, a.BitLen())}, nil
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		if ap.Port() == 0 {
			return Rule{}, bad
		}
		a := ap.Addr()
		return Rule{Prefix: netip.PrefixFrom(a, a.BitLen()), Port: ap.Port()}, nil
	}
	i := strings.LastIndex(s, ":")
	if i < 0 || !strings.Contains(s[:i], "/") {
		return Rule{}, bad
	}
	p, err := netip.ParsePrefix(s[:i])
	port, perr := strconv.ParseUint(s[i+1:], 10, 16)
	if err != nil || perr != nil || port == 0 {
		return Rule{}, bad
	}
	return Rule{Prefix: p.Masked(), Port: uint16(port)}, nil
}

// maxIfName is the longest Linux network interface name.
const maxIfName = 15

// ifNameProblem says why s cannot be (part of) an interface name of at most
// max characters; "" when it can.
func ifNameProblem(s string, max int) string {
	switch {
	case len(s) > max:
		return fmt.Sprintf("%q is longer than %d characters", s, max)
	case strings.ContainsAny(s, "/: \t\n") || s == "." || s == "..":
		return fmt.Sprintf("%q cannot name a network interface", s)
	}
	return ""
}

func checkNetwork(p *problems, path string, g HostGroup) {
	n := g.Network
	if n.TapPrefix != "" {
		if msg := ifNameProblem(n.TapPrefix, 14); msg != "" {
			p.add(path+".tap_prefix", "%s", msg)
		}
	}
	switch n.Mode {
	case "", "bridge":
		checkBridge(p, path, n)
	case "isolated":
		checkIsolated(p, path, g)
	case "macvtap":
		p.add(path+".mode", "macvtap networking is not supported yet; use bridge or isolated")
	default:
		p.add(path+".mode", "%q is not a network mode (want bridge or isolated)", n.Mode)
	}
}

func checkBridge(p *problems, path string, n *Network) {
	if n.Bridge != "" {
		if msg := ifNameProblem(n.Bridge, maxIfName); msg != "" {
			p.add(path+".bridge", "%s", msg)
		}
	}
	for _, key := range rulesSet(n) {
		p.add(path+"."+key, "only used in isolated mode")
	}
	gw, ok := parseGateway(p, path+".gateway", n.Gateway)
	if !ok {
		return
	}
	subnet := gw.Masked()
	if n.Range != "" {
		checkBridgeRange(p, path+".range", n.Range, gw)
	}
	seen := map[netip.Addr]bool{}
	for i, s := range n.Addresses {
		field := fmt.Sprintf("%s.addresses[%d]", path, i)
		a, err := netip.ParseAddr(s)
		if pr, perr := netip.ParsePrefix(s); perr == nil {
			a, err = pr.Addr(), nil
		}
		switch {
		case err != nil:
			p.add(field, "%q is not an IP address", s)
		case !subnet.Contains(a) || a == gw.Addr() || a == subnet.Addr() || a == lastAddr(gw):
			p.add(field, "%s is not a free host address in the gateway's network %s", a, subnet)
		case seen[a]:
			p.add(field, "%s is listed twice", a)
		}
		seen[a] = true
	}
}

func rulesSet(n *Network) []string {
	var keys []string
	if n.Drop != nil {
		keys = append(keys, "drop")
	}
	if n.Allow != nil {
		keys = append(keys, "allow")
	}
	return keys
}

// parseGateway checks a bridge gateway: an IPv4 CIDR whose address is a
// host of its network, such as 192.168.137.1/24.
func parseGateway(p *problems, field, s string) (netip.Prefix, bool) {
	if s == "" {
		p.add(field, "required in bridge mode (e.g. 192.168.137.1/24)")
		return netip.Prefix{}, false
	}
	gw, err := netip.ParsePrefix(s)
	if err != nil || !gw.Addr().Is4() || gw.Bits() > 30 {
		p.add(field, "%q is not an IPv4 CIDR with room for VMs (want e.g. 192.168.137.1/24)", s)
		return netip.Prefix{}, false
	}
	if gw.Addr() == gw.Masked().Addr() || gw.Addr() == lastAddr(gw) {
		p.add(field, "%q is a network or broadcast address; want a host address such as %s/%d",
			s, gw.Masked().Addr().Next(), gw.Bits())
		return netip.Prefix{}, false
	}
	return gw, true
}

// lastAddr is the highest address in p's network (IPv4 broadcast).
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// checkBridgeRange checks an "a-b" address range inside the gateway's
// network that leaves out the gateway.
func checkBridgeRange(p *problems, field, s string, gw netip.Prefix) {
	lo, hi, ok := strings.Cut(s, "-")
	a, aerr := netip.ParseAddr(strings.TrimSpace(lo))
	b, berr := netip.ParseAddr(strings.TrimSpace(hi))
	subnet := gw.Masked()
	switch {
	case !ok || aerr != nil || berr != nil:
		p.add(field, "%q is not an address range (want e.g. 192.168.137.10-192.168.137.50)", s)
	case b.Less(a):
		p.add(field, "%q ends before it starts", s)
	case !subnet.Contains(a) || !subnet.Contains(b) || a == subnet.Addr() || b == lastAddr(gw):
		p.add(field, "%q is not inside the gateway's host addresses %s", s, subnet)
	case !gw.Addr().Less(a) && !b.Less(gw.Addr()):
		p.add(field, "%q includes the gateway %s", s, gw.Addr())
	}
}

func checkIsolated(p *problems, path string, g HostGroup) {
	n := g.Network
	if longest := len(g.Name) + 1 + hostnameDigits(g); g.Name != "" && longest > maxIfName {
		p.add(strings.TrimSuffix(path, ".network")+".name",
			"%q is too long for isolated mode: VM names %s-N (N up to %d digits) must be at most %d characters; use at most %d",
			g.Name, g.Name, hostnameDigits(g), maxIfName, maxIfName-1-hostnameDigits(g))
	}
	for _, f := range []struct {
		key string
		set bool
	}{{"bridge", n.Bridge != ""}, {"gateway", n.Gateway != ""}, {"addresses", n.Addresses != nil}} {
		if f.set {
			p.add(path+"."+f.key, "only used in bridge mode")
		}
	}
	if n.Range != "" {
		r, err := netip.ParsePrefix(n.Range)
		switch {
		case err != nil || !r.Addr().Is4() || r.Bits() > 30:
			p.add(path+".range", "%q is not an IPv4 CIDR of at least /30 (want e.g. 169.254.100.0/22)", n.Range)
		case r != r.Masked():
			p.add(path+".range", "%q is not a network address (want %s)", n.Range, r.Masked())
		}
	}
	checkRules(p, path+".drop", n.Drop)
	checkRules(p, path+".allow", n.Allow)
}

func checkRules(p *problems, path string, rules []string) {
	for i, s := range rules {
		if _, err := ParseRule(s); err != nil {
			p.add(fmt.Sprintf("%s[%d]", path, i), "%v", err)
		}
	}
}

// checkNetworksApart reports bridge-mode groups that would share a bridge
// or TAP prefix, and groups whose networks overlap.
func checkNetworksApart(p *problems, groups []HostGroup) {
	type claim struct {
		group int
		net   netip.Prefix
	}
	bridges, taps := map[string]int{}, map[string]int{}
	var nets []claim
	for i, g := range groups {
		n := g.Network
		if n == nil {
			continue
		}
		path := fmt.Sprintf("config.host_groups[%d].network", i)
		if n.Mode == "" || n.Mode == "bridge" {
			claimName(p, bridges, n.Bridge, i, path+".bridge")
			claimName(p, taps, n.TapPrefix, i, path+".tap_prefix")
		}
		s := n.Gateway
		if n.Mode == "isolated" {
			s = n.Range
		}
		pr, err := netip.ParsePrefix(s)
		if err != nil {
			continue // reported by the group's own checks, or unset
		}
		for _, c := range nets {
			if c.net.Overlaps(pr.Masked()) {
				field := path + ".gateway"
				if n.Mode == "isolated" {
					field = path + ".range"
				}
				p.add(field, "%s overlaps host_groups[%d]'s network %s", pr.Masked(), c.group, c.net)
			}
		}
		nets = append(nets, claim{i, pr.Masked()})
	}
}

func claimName(p *problems, used map[string]int, name string, group int, field string) {
	if name == "" {
		return
	}
	if first, ok := used[name]; ok {
		p.add(field, "%q is also used by host_groups[%d]", name, first)
		return
	}
	used[name] = group
}
