package doctor

import (
	"fmt"
	"strings"

	"github.com/openslicer/openslicer/internal/network"
)

// The functions here turn facts into results; they do no I/O.

func configResult(name string, err error) Result {
	if err != nil {
		return Result{Check: "config", Status: Fail, Detail: fmt.Sprintf("%s: %v", name, err),
			Fix: "correct the config (the other checks use the embedded default)"}
	}
	return Result{Check: "config", Status: OK, Detail: name + " is valid"}
}

// qemuResult reads `qemu-system-x86_64 --version` (run when found): the
// first line names the version.
func qemuResult(path string, found bool, versionOut []byte, err error) Result {
	r := Result{Check: "qemu", Fix: "apt-get install qemu-system-x86"}
	switch {
	case !found:
		r.Status, r.Detail = Fail, fmt.Sprintf("%s not found in PATH", path)
	case err != nil:
		r.Status, r.Detail = Fail, fmt.Sprintf("%s --version failed: %v: %s", path, err, firstLine(string(versionOut)))
	default:
		line := firstLine(string(versionOut))
		if !strings.HasPrefix(line, "QEMU emulator version ") {
			r.Status, r.Detail = Fail, fmt.Sprintf("%s --version printed %q, not a QEMU version", path, line)
			return r
		}
		r.Status, r.Detail, r.Fix = OK, strings.TrimPrefix(line, "QEMU emulator version ")+" ("+path+")", ""
	}
	return r
}

func agentResult(path string, err error) Result {
	if err != nil {
		return Result{Check: "slicer-agent", Status: Fail, Detail: err.Error(), Fix: "make build (it puts slicer-agent next to slicer)"}
	}
	return Result{Check: "slicer-agent", Status: OK, Detail: path}
}

func busyboxResult(err error) Result {
	if err != nil {
		return Result{Check: "busybox-static", Status: Fail, Detail: err.Error(), Fix: "apt-get install busybox-static"}
	}
	return Result{Check: "busybox-static", Status: OK, Detail: "static /bin/busybox for the min image"}
}

func mkfsResult(path string, err error) Result {
	if err != nil {
		return Result{Check: "e2fsprogs", Status: Fail, Detail: err.Error(), Fix: "apt-get install e2fsprogs"}
	}
	return Result{Check: "e2fsprogs", Status: OK, Detail: path + " -d makes an ext4 file from a directory"}
}

// kernelResult: a cached kernel package means a build asks apt nothing;
// otherwise apt's lists must name the package the metapackage depends on.
func kernelResult(meta, cached, pkg string, err error) Result {
	r := Result{Check: "kernel package"}
	apt := fmt.Sprintf("apt knows %s: %s", meta, pkg)
	if err != nil {
		apt = "apt's lists do not know " + meta
	}
	switch {
	case cached != "":
		r.Status, r.Detail = OK, "cached "+cached+", so builds do not ask apt; "+apt
	case err != nil:
		r.Status, r.Detail = Fail, err.Error()
		r.Fix = "apt-get update (apt's lists must know " + meta + "; the min image is built from it)"
	default:
		r.Status, r.Detail = OK, apt
	}
	return r
}

// probeRow is one network probe: its row name, what it proves, and the fix
// when it fails.
type probeRow struct {
	check, made, fix string
	err              func(network.Probe) error
}

var probeRows = []probeRow{
	{"/dev/net/tun", "opened /dev/net/tun", "modprobe tun", func(p network.Probe) error { return p.TUN }},
	{"nftables", "created and deleted an nftables table", "modprobe nf_tables, or use a kernel with nftables", func(p network.Probe) error { return p.NFTables }},
	{"network namespace", "created and deleted a named network namespace", "run as root with CAP_SYS_ADMIN, outside a container that forbids unshare and mount", func(p network.Probe) error { return p.NetNS }},
	{"veth pair", "created and deleted a veth pair", "modprobe veth", func(p network.Probe) error { return p.Veth }},
	{"bridge", "created and deleted a bridge", "modprobe bridge", func(p network.Probe) error { return p.Bridge }},
}

// networkResults: a failed probe is a blocker only when a host group has a
// network; as another user than root nothing is probed.
func networkResults(networked, root bool, p network.Probe, groupsErr error) []Result {
	var rs []Result
	failed := Warn
	if networked {
		failed = Fail
	}
	for _, row := range probeRows {
		r := Result{Check: row.check}
		switch err := row.err(p); {
		case !root:
			r.Status, r.Detail, r.Fix = Warn, "needs root: not checked", "run slicer doctor as root"
		case err != nil:
			r.Status, r.Detail, r.Fix = failed, err.Error(), row.fix
			if !networked {
				r.Detail += " (only host groups with a network need it)"
			}
		default:
			r.Status, r.Detail = OK, row.made
		}
		rs = append(rs, r)
	}
	r := Result{Check: "config networks"}
	switch {
	case !networked:
		r.Status, r.Detail = OK, "no host group has a network"
	case !root:
		r.Status, r.Detail, r.Fix = Warn, "needs root: not checked", "run slicer doctor as root (slicer up needs root for networks)"
	case groupsErr != nil:
		r.Status, r.Detail, r.Fix = Fail, oneLine(groupsErr.Error()), "change the network settings the message names, or free what it says is in use"
	default:
		r.Status, r.Detail = OK, "every group's network is free on this host"
	}
	return append(rs, r)
}

// Free-space thresholds for the data and image directories: below
// failBelow the min image (about 200 MB with its kernel package) and a
// VM's disk may not fit; below warnBelow a few VMs filling their disks
// would run out.
const (
	failBelow = 1 << 30
	warnBelow = 5 << 30
)

// dirResult judges a daemon directory from the nearest existing one
// (existing; the daemon creates the rest), its free bytes and whether it
// is writable.
func dirResult(check, dir, existing string, free uint64, statErr, writeErr error) Result {
	r := Result{Check: check}
	where := dir
	if existing != dir {
		where = fmt.Sprintf("%s (to be created in %s)", dir, existing)
	}
	switch {
	case statErr != nil:
		r.Status, r.Detail, r.Fix = Fail, fmt.Sprintf("%s: %v", where, statErr), "choose another directory (--data-dir, --image-dir)"
	case writeErr != nil:
		r.Status, r.Detail, r.Fix = Fail, fmt.Sprintf("%s is not writable: %v", where, writeErr), "run as root, or choose a writable directory (--data-dir, --image-dir)"
	case free < failBelow:
		r.Status, r.Detail, r.Fix = Fail, fmt.Sprintf("%s: only %s free", where, sizeText(free)), "free space, or choose another directory (--data-dir, --image-dir)"
	case free < warnBelow:
		r.Status, r.Detail, r.Fix = Warn, fmt.Sprintf("%s: %s free; VM disks and suspend files may not fit", where, sizeText(free)), "free space, or choose another directory (--data-dir, --image-dir)"
	default:
		r.Status, r.Detail = OK, fmt.Sprintf("%s: %s free", where, sizeText(free))
	}
	return r
}

// apiTCPResult judges a trial listen on the API address.
func apiTCPResult(addr string, listenErr error) Result {
	r := Result{Check: "api address"}
	if listenErr != nil {
		r.Status, r.Detail = Fail, fmt.Sprintf("cannot listen on %s: %v", addr, listenErr)
		r.Fix = "stop what listens there (another slicer up?), or set api.port or api.bind_address in the config"
		return r
	}
	r.Status, r.Detail = OK, addr+" is free"
	return r
}

// socketState is what is found at the API socket path.
type socketState int

const (
	socketAbsent socketState = iota
	socketStale              // a socket file nobody listens on
	socketLive               // something accepts connections on it
	socketNotSocket
)

func apiSocketResult(path string, st socketState, err error) Result {
	r := Result{Check: "api socket"}
	fix := "stop the daemon using it, or set api.bind_address to another path"
	switch {
	case err != nil:
		r.Status, r.Detail, r.Fix = Fail, fmt.Sprintf("%s: %v", path, err), fix
	case st == socketLive:
		r.Status, r.Detail, r.Fix = Fail, path+": a daemon already listens on it", fix
	case st == socketNotSocket:
		r.Status, r.Detail, r.Fix = Fail, path+" exists and is not a socket", "remove it, or set api.bind_address to another path"
	case st == socketStale:
		r.Status, r.Detail = OK, path+": a stale socket file, which slicer up replaces"
	default:
		r.Status, r.Detail = OK, path+" is free"
	}
	return r
}

func sizeText(n uint64) string {
	const gib, mib = 1 << 30, 1 << 20
	if n >= gib {
		return fmt.Sprintf("%.1f GiB", float64(n)/gib)
	}
	return fmt.Sprintf("%d MiB", n/mib)
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(line)
}

// oneLine joins the lines of a message (errors.Join) with "; ".
func oneLine(s string) string {
	return strings.ReplaceAll(strings.TrimSpace(s), "\n", "; ")
}
