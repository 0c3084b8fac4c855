package guest

import (
	"net/netip"
	"slices"
)

// ifAddr is one IPv4 address of an interface, as netlink lists it.
type ifAddr struct {
	Index    int  // interface index
	Loopback bool // the interface is a loopback
	Global   bool // the address has global scope
	Addr     netip.Addr
}

// primaryIPv4 picks the address health reports: the first global IPv4
// address of a non-loopback interface, interfaces in index order and each
// one's addresses in the kernel's order (its primary address first).
// Global is the kernel's scope, not the address range: a link-local range
// configured by hand (an isolated network) has global scope and counts.
// It is empty when there is none.
func primaryIPv4(addrs []ifAddr) string {
	addrs = slices.Clone(addrs)
	slices.SortStableFunc(addrs, func(a, b ifAddr) int { return a.Index - b.Index })
	for _, a := range addrs {
		if a.Global && !a.Loopback && a.Addr.Is4() && !a.Addr.IsLoopback() {
			return a.Addr.String()
		}
	}
	return ""
}
