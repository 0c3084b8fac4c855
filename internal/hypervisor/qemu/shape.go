package qemu

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/openslicer/openslicer/internal/hypervisor"
)

// shapeFromArgs reads back, from a command line Args built, the shape of
// the machine it runs (see hypervisor.Shape): what a state directory's
// manifest records, but for the disks, which a save of a running machine
// takes from QEMU (block.go). It works the same for a machine this daemon started
// and for one an earlier daemon started and Attach re-adopted, whose
// command line comes from /proc, so no other record of the spec is
// needed.
func shapeFromArgs(args []string) (hypervisor.Shape, error) {
	var s hypervisor.Shape
	seen := map[string]bool{}
	for i := 0; i < len(args); i++ {
		flag := args[i]
		if !strings.HasPrefix(flag, "-") || switches[flag] || i+1 == len(args) {
			continue // the binary, or an option without a value
		}
		i++
		value := args[i]
		seen[flag] = true
		switch flag {
		case "-m":
			mb, err := strconv.ParseInt(value, 10, 64)
			if err != nil {
				return s, fmt.Errorf("qemu command line: -m %q", value)
			}
			s.MemoryBytes = mb * mib
		case "-smp":
			n, err := strconv.Atoi(value)
			if err != nil {
				return s, fmt.Errorf("qemu command line: -smp %q", value)
			}
			s.VCPUs = n
		case "-kernel":
			s.Kernel = value
		case "-initrd":
			s.Initrd = value
		case "-accel":
			s.Accelerator, _, _ = strings.Cut(value, ",")
		case "-drive":
			s.Disks = append(s.Disks, driveDisk(splitOpts(value)))
		case "-netdev":
			s.NIC = true
		case "-device":
			opts := splitOpts(value)
			if len(opts) > 0 && opts[0] == "virtio-net-device" {
				s.MAC = optNamed(opts, "mac")
			}
		}
	}
	for _, flag := range []string{"-m", "-smp", "-kernel", "-accel"} {
		if !seen[flag] {
			return s, fmt.Errorf("qemu command line has no %s: not a machine this backend started", flag)
		}
	}
	return s, nil
}

// sharedRAMFromArgs reads, from a command line Args built, how the guest's
// RAM is shared with the host, if it is: the file it maps shared
// (Spec.MemoryFile), or a shared memfd (Spec.SharedMemory). Anonymous
// memory, and a clone's privately mapped file, are neither.
func sharedRAMFromArgs(args []string) (file string, memfd bool) {
	for i := 0; i+1 < len(args); i++ {
		if args[i] != "-object" {
			continue
		}
		opts := splitOpts(args[i+1])
		if len(opts) == 0 || optNamed(opts, "share") != "on" {
			continue
		}
		switch opts[0] {
		case "memory-backend-file":
			return optNamed(opts, "mem-path"), false
		case "memory-backend-memfd":
			return "", true
		}
	}
	return "", false
}

// switches are the options of Args that take no value.
var switches = map[string]bool{"-nodefaults": true, "-no-user-config": true, "-no-reboot": true, "-daemonize": true}

// driveDisk is the disk a -drive option list (diskArgs) attaches.
func driveDisk(opts []string) hypervisor.Disk {
	return hypervisor.Disk{
		Path:     optNamed(opts, "file"),
		Format:   optNamed(opts, "format"),
		ReadOnly: optNamed(opts, "readonly") == "on",
	}
}

// optNamed returns the value of key=value in opts, or "".
func optNamed(opts []string, key string) string {
	for _, o := range opts {
		if k, v, ok := strings.Cut(o, "="); ok && k == key {
			return v
		}
	}
	return ""
}

// splitOpts splits a QEMU option list at its commas, a doubled comma
// being a literal one (see optValue).
func splitOpts(s string) []string {
	var opts []string
	var cur strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != ',' {
			cur.WriteByte(s[i])
			continue
		}
		if i+1 < len(s) && s[i+1] == ',' {
			cur.WriteByte(',')
			i++
			continue
		}
		opts = append(opts, cur.String())
		cur.Reset()
	}
	return append(opts, cur.String())
}
