package guest

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"
)

// primaryIP is the guest's address for health; see primaryIPv4. Failures
// are logged and give an empty address.
func (s *Server) primaryIP() string {
	addrs, err := listIPv4()
	if err != nil {
		s.log.Debug("list addresses", "err", err)
		return ""
	}
	return primaryIPv4(addrs)
}

// listIPv4 lists the IPv4 addresses of every interface, with their scope,
// from a netlink dump.
func listIPv4() ([]ifAddr, error) {
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}
	loopback := map[int]bool{}
	for _, ifc := range ifaces {
		loopback[ifc.Index] = ifc.Flags&net.FlagLoopback != 0
	}
	rib, err := syscall.NetlinkRIB(unix.RTM_GETADDR, unix.AF_INET)
	if err != nil {
		return nil, fmt.Errorf("dump addresses: %w", err)
	}
	msgs, err := syscall.ParseNetlinkMessage(rib)
	if err != nil {
		return nil, fmt.Errorf("parse address dump: %w", err)
	}
	var out []ifAddr
	for i := range msgs {
		a, ok := parseAddrMessage(&msgs[i])
		if ok {
			a.Loopback = loopback[a.Index]
			out = append(out, a)
		}
	}
	return out, nil
}

// parseAddrMessage reads an RTM_NEWADDR message: the ifaddrmsg header
// (family, prefix length, flags, scope, index) and the local address.
func parseAddrMessage(m *syscall.NetlinkMessage) (ifAddr, bool) {
	if m.Header.Type != unix.RTM_NEWADDR || len(m.Data) < unix.SizeofIfAddrmsg || m.Data[0] != unix.AF_INET {
		return ifAddr{}, false
	}
	a := ifAddr{
		Global: m.Data[3] == unix.RT_SCOPE_UNIVERSE,
		Index:  int(binary.NativeEndian.Uint32(m.Data[4:8])),
	}
	attrs, err := syscall.ParseNetlinkRouteAttr(m)
	if err != nil {
		return ifAddr{}, false
	}
	var local, address netip.Addr
	for _, at := range attrs {
		ip, ok := netip.AddrFromSlice(at.Value)
		switch {
		case !ok:
		case at.Attr.Type == unix.IFA_LOCAL:
			local = ip
		case at.Attr.Type == unix.IFA_ADDRESS:
			address = ip
		}
	}
	// IFA_LOCAL is the interface's own address; IFA_ADDRESS is the same,
	// or the peer on a point-to-point link.
	a.Addr = local
	if !a.Addr.IsValid() {
		a.Addr = address
	}
	return a, a.Addr.IsValid()
}
