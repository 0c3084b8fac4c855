package sysconf

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// ipParam is the kernel command line parameter that carries the guest
// network, in the kernel's own "ip=" form:
// ip=<client>::<gateway>:<netmask>:<hostname>:<device>:off[:<dns0>[:<dns1>]].
// The guest kernel is built without IP autoconfiguration, so the agent
// applies it.
const ipParam = "ip"

// Network is the guest's IPv4 network on one device, as the daemon
// planned it: from the ip= parameter at boot, or from an identity request.
type Network struct {
	Device  string
	Address netip.Prefix
	Gateway netip.Addr // invalid when there is none
	DNS     []netip.Addr
	// MAC, when set, becomes the device's hardware address: a clone of a
	// memory image wakes with its image's, which the hypervisor's saved
	// device state holds (nil: left as it is).
	MAC net.HardwareAddr
}

// parseIPParam parses the value of the ip= parameter. Only the static form
// the daemon writes is accepted.
func parseIPParam(v string) (Network, error) {
	f := strings.Split(v, ":")
	if len(f) < 7 {
		return Network{}, fmt.Errorf("ip=%s: want client::gateway:netmask:hostname:device:off", v)
	}
	var c Network
	addr, err := netip.ParseAddr(f[0])
	if err != nil || !addr.Is4() {
		return Network{}, fmt.Errorf("ip=%s: client %q is not an IPv4 address", v, f[0])
	}
	mask, err := netip.ParseAddr(f[3])
	if err != nil || !mask.Is4() {
		return Network{}, fmt.Errorf("ip=%s: netmask %q is not an IPv4 mask", v, f[3])
	}
	m := mask.As4()
	ones, bits := net.IPMask(m[:]).Size()
	if bits == 0 {
		return Network{}, fmt.Errorf("ip=%s: netmask %q is not contiguous", v, f[3])
	}
	c.Address = netip.PrefixFrom(addr, ones)
	if f[2] != "" {
		if c.Gateway, err = netip.ParseAddr(f[2]); err != nil || !c.Gateway.Is4() {
			return Network{}, fmt.Errorf("ip=%s: gateway %q is not an IPv4 address", v, f[2])
		}
	}
	c.Device = f[5]
	if c.Device == "" {
		c.Device = "eth0"
	}
	if f[6] != "off" && f[6] != "none" {
		return Network{}, fmt.Errorf("ip=%s: autoconf %q is not supported, only off", v, f[6])
	}
	for _, s := range f[7:] {
		if s == "" {
			continue
		}
		d, err := netip.ParseAddr(s)
		if err != nil {
			return Network{}, fmt.Errorf("ip=%s: DNS server %q is not an IP address", v, s)
		}
		c.DNS = append(c.DNS, d)
	}
	return c, nil
}

// resolvConf is /etc/resolv.conf for servers.
func resolvConf(servers []netip.Addr) string {
	var b strings.Builder
	b.WriteString("# written by slicer-agent from the host group's dns_servers\n")
	for _, s := range servers {
		fmt.Fprintf(&b, "nameserver %s\n", s)
	}
	return b.String()
}
