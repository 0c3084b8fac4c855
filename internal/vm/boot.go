package vm

import (
	"fmt"
	"strings"

	"github.com/openslicer/openslicer/internal/store"
)

// guestName is the name a VM's guest is given: its hostname, unless it
// keeps another (a fork without the hostname fix-up keeps its source's).
func guestName(rec store.VM) string {
	if rec.GuestHostname != "" {
		return rec.GuestHostname
	}
	return rec.Hostname
}

// GuestCmdline returns the guest's part of a VM's kernel command line
// (hypervisor.Spec.Cmdline): the agent's slicer.* parameters, then extra
// (a host group's kernel_args), then network (the guest's address as an
// ip= argument, empty without a network). The backend puts its own
// arguments for the machine it emulates in front of it, so kernel_args
// come after every argument of the daemon and its backend, and win where
// both set the same one: the kernel takes the last. The network argument
// follows them, as it always has, which changes nothing, since
// kernel_args may set neither ip= nor slicer.* (config validation
// reserves them). The agent (PID 1 in the initramfs) reads the slicer.*
// parameters and ip=: slicer.hostname, and slicer.init when init (a host
// group's init: systemd or agent) is set.
func GuestCmdline(hostname, init, extra, network string) string {
	args := []string{fmt.Sprintf("slicer.hostname=%s", hostname)}
	if init != "" {
		args = append(args, "slicer.init="+init)
	}
	if extra = strings.TrimSpace(extra); extra != "" {
		args = append(args, extra)
	}
	if network != "" {
		args = append(args, network)
	}
	return strings.Join(args, " ")
}
