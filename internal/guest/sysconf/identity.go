package sysconf

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path"
	"slices"
	"strings"
)

// Identity is who a guest is: what PID 1 takes from the kernel command line
// at boot, and what the host hands a running guest (a restored or forked
// memory image) through the agent. A zero field is left as the system has
// it.
type Identity struct {
	Hostname string
	Network  *Network
	// MachineID is /etc/machine-id's value: 32 lower-case hex digits.
	MachineID string
	// Entropy is mixed into the kernel's random pool, and the kernel's RNG
	// reseeded from it.
	Entropy []byte
}

// Check reports every field of id a guest would refuse.
func (id Identity) Check() error {
	var errs []error
	if id.Hostname != "" {
		if err := checkHostname(id.Hostname); err != nil {
			errs = append(errs, err)
		}
	}
	if id.MachineID != "" {
		if err := checkMachineID(id.MachineID); err != nil {
			errs = append(errs, err)
		}
	}
	if id.Network != nil {
		if err := id.Network.check(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// maxHostname is the kernel's limit (HOST_NAME_MAX).
const maxHostname = 64

// checkHostname accepts a host name of RFC 1123 labels: letters, digits and
// hyphens, no label starting or ending with a hyphen, at most 64 bytes.
func checkHostname(name string) error {
	if len(name) > maxHostname {
		return fmt.Errorf("hostname %q: longer than %d bytes", name, maxHostname)
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || strings.HasPrefix(label, "-") || strings.HasSuffix(label, "-") {
			return fmt.Errorf("hostname %q: want dot-separated labels of letters, digits and inner hyphens", name)
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return fmt.Errorf("hostname %q: %q is not a letter, digit or hyphen", name, r)
			}
		}
	}
	return nil
}

// checkMachineID accepts what machine-id(5) describes: 32 lower-case
// hexadecimal digits, not all zero.
func checkMachineID(id string) error {
	if len(id) != 32 || strings.Trim(id, "0123456789abcdef") != "" || strings.Trim(id, "0") == "" {
		return fmt.Errorf("machine id %q: want 32 lower-case hex digits, not all zero", id)
	}
	return nil
}

// maxDevice is the kernel's limit on an interface name (IFNAMSIZ-1).
const maxDevice = 15

func (n Network) check() error {
	var errs []error
	if n.Device != "" && (len(n.Device) > maxDevice || strings.ContainsAny(n.Device, "/: \t\n") || n.Device == "." || n.Device == "..") {
		errs = append(errs, fmt.Errorf("network device %q: not an interface name", n.Device))
	}
	if !n.Address.IsValid() || !n.Address.Addr().Is4() || n.Address.Bits() == 0 {
		errs = append(errs, fmt.Errorf("network address %s: want an IPv4 address with its network's length, e.g. 192.168.137.2/24", n.Address))
	}
	if n.Gateway.IsValid() && !n.Gateway.Is4() {
		errs = append(errs, fmt.Errorf("network gateway %s: not an IPv4 address", n.Gateway))
	}
	for _, d := range n.DNS {
		if !d.IsValid() {
			errs = append(errs, errors.New("network dns: an empty address"))
		}
	}
	if n.MAC != nil && (len(n.MAC) != 6 || n.MAC[0]&1 != 0 || bytes.Equal(n.MAC, make(net.HardwareAddr, 6))) {
		errs = append(errs, fmt.Errorf("network mac %s: want a unicast Ethernet address, e.g. 02:00:00:00:00:01", n.MAC))
	}
	return errors.Join(errs...)
}

// device is the NIC n configures, eth0 when it names none.
func (n Network) device() string {
	if n.Device == "" {
		return "eth0"
	}
	return n.Device
}

// File is a file a system setting writes, Path absolute in the guest.
type File struct {
	Path string
	Data string
	Mode uint32
}

// Paths of the files an identity writes.
const (
	hostnameFile   = "/etc/hostname"
	hostsFile      = "/etc/hosts"
	resolvConfFile = "/etc/resolv.conf"
	machineIDFile  = "/etc/machine-id"
	// dbusMachineIDFile is D-Bus's copy of the machine id, on systems
	// where it is a file of its own rather than a link to machineIDFile.
	dbusMachineIDFile = "/var/lib/dbus/machine-id"
)

// Files returns the files id writes, in order. dbusCopy says that D-Bus
// keeps its own copy of the machine id (a regular file, not a link), which
// must then change with /etc/machine-id.
func (id Identity) Files(dbusCopy bool) []File {
	var fs []File
	if id.Hostname != "" {
		fs = append(fs, File{hostnameFile, id.Hostname + "\n", 0o644})
	}
	if id.Network != nil && len(id.Network.DNS) > 0 {
		fs = append(fs, File{resolvConfFile, resolvConf(id.Network.DNS), 0o644})
	}
	if id.MachineID != "" {
		fs = append(fs, File{machineIDFile, id.MachineID + "\n", 0o444})
		if dbusCopy {
			fs = append(fs, File{dbusMachineIDFile, id.MachineID + "\n", 0o444})
		}
	}
	return fs
}

// staleAddresses returns the addresses of have that are not want: what a
// device must lose to hold want alone.
func staleAddresses(have []netip.Prefix, want netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range have {
		if p != want {
			out = append(out, p)
		}
	}
	return out
}

// under returns p inside root (root "/" is p itself).
func under(root, p string) string { return path.Join(root, p) }

// Hosts returns /etc/hosts, whose text is current, naming name: the
// one rule for the boot (old "") and for a guest renamed from old through
// the identity route. The text is unchanged when an entry names name
// already. Otherwise every entry naming old names name instead (comments
// and other names kept); failing that, the first 127.0.1.1 line (Debian's
// line for the machine's own name, the image's) becomes "127.0.1.1 name";
// failing that, such a line is added. So the VM's name resolves: sudo
// warns "unable to resolve host" otherwise.
func Hosts(current, old, name string) string {
	lines := strings.SplitAfter(current, "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	hostsEntry := func(line string) (fields []string, comment string, hasComment bool) {
		body, comment, hasComment := strings.Cut(strings.TrimSuffix(line, "\n"), "#")
		return strings.Fields(body), comment, hasComment
	}
	for _, line := range lines {
		if fields, _, _ := hostsEntry(line); len(fields) > 1 && slices.ContainsFunc(fields[1:], func(f string) bool { return strings.EqualFold(f, name) }) {
			return current
		}
	}
	named, loopback := false, -1
	for i, line := range lines {
		fields, comment, hasComment := hostsEntry(line)
		if len(fields) < 2 {
			continue
		}
		if fields[0] == "127.0.1.1" && loopback < 0 {
			loopback = i
		}
		changed := false
		for j := 1; j < len(fields); j++ {
			if old != "" && strings.EqualFold(fields[j], old) {
				fields[j], changed, named = name, true, true
			}
		}
		if changed {
			out := fields[0] + "\t" + strings.Join(fields[1:], " ")
			if hasComment {
				out += " #" + comment
			}
			lines[i] = out + "\n"
		}
	}
	switch {
	case named:
	case loopback >= 0:
		lines[loopback] = "127.0.1.1\t" + name + "\n"
	default:
		lines = append(lines, "127.0.1.1\t"+name+"\n")
	}
	for i, line := range lines[:len(lines)-1] { // a last line without its newline
		if !strings.HasSuffix(line, "\n") {
			lines[i] = line + "\n"
		}
	}
	return strings.Join(lines, "")
}
