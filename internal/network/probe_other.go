//go:build !linux

package network

import "context"

// ProbeHost reports that nothing can be made: VM networking needs Linux.
func ProbeHost(ctx context.Context, opt ProbeOptions) Probe {
	return Probe{TUN: errNotLinux, NFTables: errNotLinux, NetNS: errNotLinux, Veth: errNotLinux, Bridge: errNotLinux}
}
