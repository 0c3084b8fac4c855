package network

// Probe is what ProbeHost found: for each kind of object the daemon makes,
// nil when this host could make (and remove) one, else why not.
type Probe struct {
	TUN      error // opening /dev/net/tun (TAP devices)
	NFTables error // an inet nftables table (NAT and egress rules)
	NetNS    error // a named network namespace (isolated groups)
	Veth     error // a veth pair across namespaces (isolated groups)
	Bridge   error // a bridge (bridge groups)
}

// ProbeOptions say where ProbeHost works and what it names its objects.
type ProbeOptions struct {
	// Tag names every object (the table, the namespace, <tag>a/<tag>b,
	// <tag>br): lowercase letters and digits, at most 11 characters,
	// unique to the caller (e.g. "sdoc" and the pid).
	Tag string
	// NetNS is the namespace treated as the host; empty is the calling
	// thread's.
	NetNS string
	// NetNSDir is where the named namespace is made; DefaultNetNSDir when
	// empty.
	NetNSDir string
}
