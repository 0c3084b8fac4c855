package network

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/config"
)

// Network modes.
const (
	ModeBridge   = "bridge"
	ModeIsolated = "isolated"
)

// DefaultDNS is the guest's resolvers when the group sets no dns_servers.
var DefaultDNS = []string{"8.8.8.8", "1.1.1.1"}

// Device names inside an isolated VM's namespace: the namespace is the
// VM's alone, so they need no VM name.
const (
	nsTAP    = "tap0"
	nsBridge = "br0"
	nsVeth   = "eth0"
)

// maxIfName is the longest Linux interface name.
const maxIfName = 15

// Plan is everything needed to wire one VM, computed from its host group
// and its slot: plain data, so the daemon can record it and apply the same
// plan again after a restart.
//
// The slot is the VM's place in the group's address space: 0 for the first
// address. Slots are reused once a VM is gone (FreeSlot), unlike hostnames,
// so a group never runs out of addresses through churn alone.
type Plan struct {
	Mode  string `json:"mode"`
	Group string `json:"group"`
	// VM is the hostname; every object of the VM is named after it.
	VM   string `json:"vm"`
	Slot int    `json:"slot"`
	// TAP is the guest NIC's device: in the host namespace (bridge mode)
	// or inside the VM's namespace (isolated mode).
	TAP   string `json:"tap"`
	MAC   string `json:"mac"`
	Guest Guest  `json:"guest"`

	// Bridge is the group's bridge (bridge mode).
	Bridge string `json:"bridge,omitempty"`
	// Range is the group's isolated address range (isolated mode).
	Range netip.Prefix `json:"range,omitzero"`
	// Policy is the VM's egress policy (isolated mode).
	Policy Policy `json:"policy"`
	// Naming is how the Host names the VM's objects: NamingInstance, or
	// NamingLegacy for a plan recorded before instance ids (which has
	// none). The names themselves (netns, tables, aliases, the host veth)
	// are the Host's to derive, from its instance id.
	Naming int `json:"naming,omitempty"`
}

// Guest is the guest's side of the network.
type Guest struct {
	// Address is the guest's address with the length of its network.
	Address netip.Prefix `json:"address"`
	Gateway netip.Addr   `json:"gateway"`
	DNS     []netip.Addr `json:"dns"`
}

// GatewayPrefix is the gateway address with the guest network's length:
// what the bridge (bridge mode) or host veth (isolated mode) carries.
func (g Guest) GatewayPrefix() netip.Prefix {
	return netip.PrefixFrom(g.Gateway, g.Address.Bits())
}

// KernelArg is the guest network as a kernel "ip=" argument
// (ip=<client>::<gateway>:<netmask>:<hostname>:<device>:off:<dns0>:<dns1>),
// a standard form a guest init can parse from /proc/cmdline.
func (g Guest) KernelArg(hostname, device string) string {
	mask := net.IP(net.CIDRMask(g.Address.Bits(), 32)).String()
	fields := []string{g.Address.Addr().String(), "", g.Gateway.String(), mask, hostname, device, "off"}
	for _, d := range g.DNS[:min(2, len(g.DNS))] {
		fields = append(fields, d.String())
	}
	return "ip=" + strings.Join(fields, ":")
}

// FreeSlot is the lowest slot not in used.
func FreeSlot(used []int) int {
	for s := 0; ; s++ {
		if !slices.Contains(used, s) {
			return s
		}
	}
}

// PlanFor plans vm's network in group g by the group's mode. The override
// is the create request's network field; it is only accepted for isolated
// groups. A group without a network is an error: there is nothing to plan.
func PlanFor(g config.HostGroup, vm string, slot int, override *api.CreateNodeNetworkPolicy) (Plan, error) {
	if g.Network == nil {
		if override != nil {
			return Plan{}, fmt.Errorf("%w: network: host group %q has no network to apply a policy to", api.ErrInvalid, g.Name)
		}
		return Plan{}, fmt.Errorf("host group %q has no network", g.Name)
	}
	switch g.Network.Mode {
	case "", ModeBridge:
		if override != nil {
			return Plan{}, fmt.Errorf("%w: network: egress overrides apply only to isolated host groups; %q is in bridge mode", api.ErrInvalid, g.Name)
		}
		return PlanBridge(g, vm, slot)
	case ModeIsolated:
		return PlanIsolated(g, vm, slot, override)
	default:
		return Plan{}, fmt.Errorf("host group %q: network mode %q is not supported", g.Name, g.Network.Mode)
	}
}

// PlanBridge plans vm in the bridge-mode group g. Slot 0 takes the first
// address of network.addresses, of network.range, or else the gateway's
// network from .2 upward (skipping the gateway); the TAP is
// <tap_prefix><slot>. The bridge and tap_prefix must be set (config
// defaults fill them).
func PlanBridge(g config.HostGroup, vm string, slot int) (Plan, error) {
	n := g.Network
	fail := func(format string, a ...any) (Plan, error) {
		return Plan{}, fmt.Errorf("host group %q: "+format, append([]any{g.Name}, a...)...)
	}
	switch {
	case n == nil:
		return fail("no network")
	case n.Bridge == "" || n.TapPrefix == "":
		return fail("network.bridge and network.tap_prefix must be set (config defaults fill them)")
	case slot < 0:
		return fail("slot %d is negative", slot)
	}
	gw, err := netip.ParsePrefix(n.Gateway)
	if err != nil || !gw.Addr().Is4() || gw.Bits() > 30 {
		return fail("network.gateway %q is not an IPv4 CIDR such as 192.168.137.1/24", n.Gateway)
	}
	addr, err := bridgeAddress(n, gw, slot)
	if err != nil {
		return fail("%w", err)
	}
	tap := n.TapPrefix + strconv.Itoa(slot)
	if len(tap) > maxIfName {
		return fail("TAP name %q is longer than %d characters: shorten network.tap_prefix", tap, maxIfName)
	}
	dns, err := dnsServers(g)
	if err != nil {
		return fail("%w", err)
	}
	return Plan{
		Mode: ModeBridge, Group: g.Name, VM: vm, Slot: slot,
		TAP: tap, MAC: macFor(g.Name, vm), Bridge: n.Bridge, Naming: NamingInstance,
		Guest:  Guest{Address: netip.PrefixFrom(addr, gw.Bits()), Gateway: gw.Addr(), DNS: dns},
		Policy: Policy{Group: emptyPolicy(), Effective: emptyPolicy()},
	}, nil
}

// bridgeAddress is the guest address of slot.
func bridgeAddress(n *config.Network, gw netip.Prefix, slot int) (netip.Addr, error) {
	subnet := gw.Masked()
	if len(n.Addresses) > 0 {
		if slot >= len(n.Addresses) {
			return netip.Addr{}, fmt.Errorf("all %d addresses of network.addresses are in use: %w", len(n.Addresses), api.ErrUnavailable)
		}
		s := n.Addresses[slot]
		if p, err := netip.ParsePrefix(s); err == nil {
			return p.Addr(), nil
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Addr{}, fmt.Errorf("network.addresses[%d] %q is not an IP address", slot, s)
		}
		return a, nil
	}
	first, last := addrAdd(subnet.Addr(), 2), addrAdd(lastAddr(subnet), -1)
	if n.Range != "" {
		lo, hi, ok := strings.Cut(n.Range, "-")
		a, aerr := netip.ParseAddr(strings.TrimSpace(lo))
		b, berr := netip.ParseAddr(strings.TrimSpace(hi))
		if !ok || aerr != nil || berr != nil {
			return netip.Addr{}, fmt.Errorf("network.range %q is not an address range such as 192.168.137.10-192.168.137.50", n.Range)
		}
		first, last = a, b
	}
	a := addrAdd(first, slot)
	if gw.Addr().Compare(first) >= 0 && gw.Addr().Compare(a) <= 0 {
		a = addrAdd(a, 1) // step over the gateway
	}
	if a.Compare(last) > 0 || !subnet.Contains(a) {
		return netip.Addr{}, fmt.Errorf("no address left in %s-%s for slot %d: %w", first, last, slot, api.ErrUnavailable)
	}
	return a, nil
}

// PlanIsolated plans vm in the isolated group g: the slot-th /30 of the
// group's range (network.range, or DefaultRange of the group name), with
// the gateway at .1 on the host end of the veth and the guest at .2, and
// the effective egress policy of the group's lists and override.
func PlanIsolated(g config.HostGroup, vm string, slot int, override *api.CreateNodeNetworkPolicy) (Plan, error) {
	n := g.Network
	fail := func(format string, a ...any) (Plan, error) {
		return Plan{}, fmt.Errorf("host group %q: "+format, append([]any{g.Name}, a...)...)
	}
	switch {
	case n == nil:
		return fail("no network")
	case slot < 0:
		return fail("slot %d is negative", slot)
	case len(vm) > maxIfName || vm == "":
		return fail("VM name %q must be 1 to %d characters in isolated mode", vm, maxIfName)
	}
	r, err := GroupRange(g)
	if err != nil {
		return fail("%w", err)
	}
	if slots := 1 << (32 - r.Bits()) / 4; slot >= slots {
		return fail("all %d /30 networks of range %s are in use: %w", slots, r, api.ErrUnavailable)
	}
	base := addrAdd(r.Addr(), 4*slot)
	policy, err := NewPolicy(n.Allow, n.Drop, override)
	if err != nil {
		return Plan{}, err
	}
	dns, err := dnsServers(g)
	if err != nil {
		return fail("%w", err)
	}
	return Plan{
		Mode: ModeIsolated, Group: g.Name, VM: vm, Slot: slot,
		TAP: nsTAP, MAC: macFor(g.Name, vm), Range: r, Naming: NamingInstance,
		Guest:  Guest{Address: netip.PrefixFrom(addrAdd(base, 2), 30), Gateway: addrAdd(base, 1), DNS: dns},
		Policy: policy,
	}, nil
}

// GroupRange is the isolated group's address range: network.range, or
// DefaultRange of its name.
func GroupRange(g config.HostGroup) (netip.Prefix, error) {
	if g.Network == nil || g.Network.Range == "" {
		return DefaultRange(g.Name), nil
	}
	r, err := netip.ParsePrefix(g.Network.Range)
	if err != nil || !r.Addr().Is4() || r.Bits() > 30 {
		return netip.Prefix{}, fmt.Errorf("network.range %q is not an IPv4 CIDR of at least /30", g.Network.Range)
	}
	return r.Masked(), nil
}

// DefaultRange is a /22 inside 169.254.0.0/16 chosen by a hash of the group
// name, so that groups (and daemons) with different names seldom collide;
// CheckHost reports the collisions that remain. It never picks the first or
// last /22 (RFC 3927 reserves 169.254.0.0/24 and 169.254.255.0/24) nor
// 169.254.168.0/22, which holds the cloud metadata address 169.254.169.254.
func DefaultRange(group string) netip.Prefix {
	var blocks []int // usable /22 blocks: the third octet is 4*block
	for b := 1; b < 63; b++ {
		if b != 169/4 {
			blocks = append(blocks, b)
		}
	}
	sum := sha256.Sum256([]byte(group))
	b := blocks[binary.BigEndian.Uint32(sum[:4])%uint32(len(blocks))]
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{169, 254, byte(4 * b), 0}), 22)
}

// macFor is a locally administered unicast MAC derived from the VM name.
func macFor(group, vm string) string {
	sum := sha256.Sum256([]byte(group + "/" + vm))
	mac := net.HardwareAddr(sum[:6])
	mac[0] = mac[0]&^1 | 2
	return mac.String()
}

func dnsServers(g config.HostGroup) ([]netip.Addr, error) {
	list := g.DNSServers
	if len(list) == 0 {
		list = DefaultDNS
	}
	out := make([]netip.Addr, 0, len(list))
	for i, s := range list {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("dns_servers[%d] %q is not an IP address", i, s)
		}
		out = append(out, a)
	}
	return out, nil
}

// addrAdd is a plus n, within IPv4.
func addrAdd(a netip.Addr, n int) netip.Addr {
	b := a.As4()
	v := binary.BigEndian.Uint32(b[:]) + uint32(n)
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}

// lastAddr is the highest address of p (the IPv4 broadcast).
func lastAddr(p netip.Prefix) netip.Addr {
	return addrAdd(p.Masked().Addr(), 1<<(32-p.Bits())-1)
}
