// Package sysconf applies the guest's system settings: the hostname, the
// loopback interface and the network from the kernel command line
// (slicer.hostname=, ip=), and the wall clock. PID 1 applies them at boot
// (internal/guest/pid1), and the agent's routes may apply them later. The
// parsers are pure and tested on samples; the *_linux.go files apply what
// they parse.
package sysconf

import "strings"

// hostnameParam is the kernel command line parameter that names the guest.
const hostnameParam = "slicer.hostname"

// KernelParam returns the value of key=value in a kernel command line (the
// contents of /proc/cmdline); the last occurrence wins, as in the kernel.
// Quoting is not supported: the daemon never writes values with spaces.
func KernelParam(cmdline, key string) (string, bool) {
	val, found := "", false
	for _, f := range strings.Fields(cmdline) {
		if k, v, ok := strings.Cut(f, "="); ok && k == key {
			val, found = v, true
		}
	}
	return val, found
}
