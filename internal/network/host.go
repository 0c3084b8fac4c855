package network

import "log/slog"

// DefaultNetNSDir is where named network namespaces live, as `ip netns`
// expects them.
const DefaultNetNSDir = "/run/netns"

// Options configure a Host.
type Options struct {
	// Prefix begins the name of every object the Host creates: lowercase
	// letters and digits, DefaultPrefix when empty.
	Prefix string
	// Instance is the id of the daemon's data directory, 8 lowercase hex
	// digits (required). It is in every object's name, alias or table
	// name, and the Host removes only objects that carry it.
	Instance string
	// NetNS is the path of the namespace treated as the host: bridges,
	// TAPs of bridge mode, host veths, routes and nftables rules go there.
	// Empty means the namespace of the thread calling New (the daemon's).
	NetNS string
	// NetNSDir holds the VMs' named namespaces; DefaultNetNSDir when empty.
	NetNSDir string
	Log      *slog.Logger
}

// Attachment is what the hypervisor needs of a VM's network.
type Attachment struct {
	// TAP is the device for hypervisor.Spec.TAP.
	TAP string
	// MAC is the guest NIC's address for hypervisor.Spec.MAC.
	MAC string
	// NetNS is the path of the namespace the hypervisor must be started in
	// (InNetNS) so that it finds TAP; empty in bridge mode.
	NetNS string
}
