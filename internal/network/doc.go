// Package network is the host side of VM networking: it plans each VM's
// addresses and device names from its host group (pure functions, tested
// without root), and applies the plan on Linux with netlink and nftables.
//
// # Modes
//
// Bridge mode: one bridge per host group carries the gateway address
// (network.gateway); each VM has a TAP in the host namespace, enslaved to
// the bridge, and takes an address from .2 upward (or from network.range /
// network.addresses). Egress is masqueraded. VMs reach each other and the
// host reaches them.
//
// Isolated mode: each VM has its own network namespace holding its TAP
// ("tap0"), a bridge ("br0") and one end of a veth pair ("eth0"); the other
// end is in the host namespace, is named after the VM (its hostname, which
// config validation keeps to 15 characters) and carries the gateway of the
// VM's /30. The namespace is plain layer 2: the routing, the NAT and every
// filter live in the host namespace, outside the guest's reach. The
// hypervisor process runs inside the namespace (InNetNS), so it opens its TAP
// by name there and has no other network of its own.
//
// Isolated rules, per VM: forwarded traffic into the VM is dropped unless it
// belongs to a connection the VM opened (so VM ↔ VM is blocked in both
// directions, whatever the groups); traffic from the VM to the host itself
// is dropped unless it answers the host; packets not from the VM's own
// address, IPv6 packets, and packets to 169.254.0.0/16 (link-local, which
// holds cloud metadata services) are dropped; then the egress policy
// (allow/drop lists, see Policy) decides, and what leaves is masqueraded.
// The host can open connections to its VMs in both modes.
//
// # Ownership
//
// Everything this package creates is found again by name, never by guess:
//
//   - network namespaces: <dir>/<prefix>-<vm> (dir is /run/netns)
//   - nftables tables (family inet): <prefix>-vm-<vm> per isolated VM,
//     <prefix>-group-<group> per bridge group
//   - links: the ifalias "<prefix>/vm/<vm>" on every TAP and veth of a VM,
//     "<prefix>/group/<group>" on a bridge it created
//
// The prefix is "slicer" unless the Host is given another (tests use their
// own, so they never touch a daemon's objects). A link without one of these
// aliases is never changed or deleted; an existing bridge named in the
// config is used as it is, and left in place.
package network
