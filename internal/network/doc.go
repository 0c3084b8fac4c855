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
// end is in the host namespace, named from a hash of the daemon's instance
// and the VM (see Ownership; its alias names the VM), and carries the
// gateway of the VM's /30. The namespace is plain layer 2: the routing, the NAT and every
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
// Several daemons may share a host (and its namespace directory), each
// with its own data directory. Each daemon's Host has an instance id, 8
// hex digits kept in its data directory, and everything it creates
// carries it, so that a daemon finds its own objects and never touches
// another's:
//
//   - network namespaces: <dir>/<prefix>-<id>-vm-<vm> (dir is /run/netns)
//   - nftables tables (family inet): <prefix>-<id>-vm-<vm> per isolated
//     VM, <prefix>-<id>-group-<group> per bridge group; rule comments
//     begin "<prefix>/<id>"
//   - links: the ifalias "<prefix>/<id>/vm/<vm>" on every TAP and veth of
//     a VM, "<prefix>/<id>/group/<group>" on a bridge it created; the
//     host end of an isolated VM's veth is "slv" and 12 characters of a
//     hash of prefix, id and VM, so that two daemons whose groups share a
//     name get different devices within 15 bytes
//
// Names the config sets (network.bridge, tap_prefix) are kept as they are:
// their attribution is in the alias. A device of such a name that another
// daemon made, or that no daemon made, is an error (CheckHost at start,
// Setup at create), never taken over; so is an address of a VM's network
// already on another device.
//
// Setup, Teardown and Reclaim touch only objects of their own id: Reclaim
// (start-up and stop) scans for that id and nothing else. The prefix is
// "slicer" unless the Host is given another (tests use their own).
//
// Objects made before instance ids ("<prefix>-vm-<vm>", alias
// "<prefix>/vm/<vm>", the veth named after the hostname) are never removed
// by a scan: the first Reclaim logs them once. A VM whose recorded plan
// predates instance ids (Plan.Naming is NamingLegacy) keeps those names
// while its machine runs, so a daemon upgraded under a running VM keeps its
// network and removes it when the VM stops; its next start uses the new
// names. An existing bridge that no daemon or an earlier version made is
// used as it is, and left in place.
package network
