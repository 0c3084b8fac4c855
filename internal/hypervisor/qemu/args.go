package qemu

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/agent/channel"
	"github.com/openslicer/openslicer/internal/hypervisor"
)

// Files QEMU creates in a machine's RunDir.
const (
	agentSocket = "agent.sock"
	qmpSocket   = "qmp.sock"
	pidFile     = "qemu.pid"
	// defaultConsole is used when Spec.ConsoleLog is empty.
	defaultConsole = "console.log"
	// agentPortID is the port's device id, which QEMU names in the
	// VSERPORT_CHANGE events it sends when the guest opens or closes it.
	agentPortID = "agentport"
	// agentChardevID is the id of the agent port's socket chardev.
	agentChardevID = "agent"
	// migrationFile is the migration stream in a state directory: QEMU
	// writes memory and device state as one stream.
	migrationFile = "vm.migration"
	// stateFormat names that stream in a state directory's manifest.
	stateFormat = "qemu-migration"
	// memoryFile is the guest RAM of a captured machine that ran with a
	// memory file (Spec.MemoryFile); its migration stream then holds
	// device state only.
	memoryFile = "memory"
	// sharedMemoryFormat names, in a manifest, a migration stream without
	// RAM beside a memory file (QEMU's x-ignore-shared capability).
	sharedMemoryFormat = "qemu-migration-shared-memory"
	// ramID is the id of the guest RAM's memory backend: the one microvm
	// gives its RAM when none is named, so that the migration streams of
	// a machine with a memory file and of one without name the same RAM
	// block and each can load the other's.
	ramID = "microvm.ram"
	// ignoreShared is the migration capability that leaves shared RAM out
	// of the stream, and has the target load none into its RAM.
	ignoreShared = "x-ignore-shared"
)

// bootArgs are the kernel arguments of the machine this backend emulates,
// put in front of the guest's own (Spec.Cmdline), which the kernel reads
// later and so win where both set one: the console on the one serial
// port, a reboot or panic that ends the process at once (with
// -no-reboot), and what shortens boot of the Debian cloud kernel on the
// microvm machine (no PCI, no i8042 probing, one UART, no self-tests),
// measured in PLATFORM.md §2 under TCG: about 0.8 s of guest uptime to
// /init with these, 1.1 s without.
var bootArgs = []string{
	"console=ttyS0", "reboot=t", "panic=-1", "quiet",
	"mitigations=off", "tsc=reliable", "no_timer_check",
	"i8042.noaux", "i8042.nokbd", "i8042.nopnp", "i8042.dumbkbd",
	"pci=off", "random.trust_cpu=on", "8250.nr_uarts=1",
	"cryptomgr.notests", "audit=0", "nowatchdog", "noreplace-smp",
}

const (
	mib = 1 << 20
	// minMemory is the smallest guest worth booting: the Debian cloud
	// kernel and an initramfs do not fit in much less.
	minMemory = 64 * mib
	// maxUnixPath is the longest unix socket path: sun_path is 108 bytes
	// including the terminating NUL.
	maxUnixPath = 107
	// maxIfName is the longest interface name (IFNAMSIZ less the NUL).
	maxIfName = 15
)

// Accel is how QEMU runs guest code.
type Accel struct {
	// KVM selects hardware virtualization through /dev/kvm; false means
	// TCG, QEMU's software emulation.
	KVM bool
	// TSCkHz is the host's TSC frequency. Under TCG the guest reads the
	// host's TSC, and the guest kernel's own calibration of it against the
	// emulated PIT fails about half the time on a loaded or nested host
	// ("tsc: Unable to calibrate against PIT"), after which boot hangs.
	// When set, Args passes it as tsc_early_khz so the guest skips that
	// calibration. Zero leaves the guest to calibrate. Ignored under KVM.
	TSCkHz int64
}

// String names the accelerator for logs.
func (a Accel) String() string {
	if a.KVM {
		return "kvm"
	}
	return "tcg"
}

// Args returns the qemu-system-x86_64 arguments that boot spec on a
// microvm machine with the given accelerator. The process daemonizes once
// the machine is set up, writing its pid to RunDir/qemu.pid; the guest
// agent's channel is a virtio-serial port named channel.PortName behind
// RunDir/agent.sock, and QMP listens on RunDir/qmp.sock. A guest reboot
// ends the process (-no-reboot). The kernel command line is bootArgs, then
// spec.Cmdline. With spec.RestoreFrom the machine loads the migration
// stream of that state directory (-incoming) instead of running the
// kernel; the rest of the command line is the same, as QEMU requires of a
// migration target.
func Args(spec hypervisor.Spec, accel Accel) ([]string, error) {
	incoming := ""
	if spec.RestoreFrom != "" {
		incoming = filepath.Join(spec.RestoreFrom, migrationFile)
	}
	return args(spec, accel, load{stream: incoming})
}

// load is what a restoring machine loads: the migration stream in the
// file stream, and, for a captured machine that ran with a memory file,
// that file (memory), mapped privately as the guest's RAM. QEMU starts
// waiting for the stream (-incoming defer), which awaitRestore then hands
// it as an open descriptor (QMP getfd, migrate-incoming fd:), after
// setting the capability that keeps it from loading RAM when there is a
// memory file. QEMU reads the file itself: no shell, no cat, no pipe, and
// no path on the command line to quote. (Loading a 100 MB stream this way
// took 0.06-0.27 s, median 0.17 s over 4 runs, against 0.13-0.75 s,
// median 0.38 s, through an exec:cat URI, alternated on one noisy 2-core
// TCG host, 2026-12-07.)
type load struct {
	stream, memory string
}

// args is Args loading l, when set (a state directory's stream, or an
// older daemon's state file).
func args(spec hypervisor.Spec, accel Accel, l load) ([]string, error) {
	if err := validate(spec); err != nil {
		return nil, err
	}
	console := spec.ConsoleLog
	if console == "" {
		console = filepath.Join(spec.RunDir, defaultConsole)
	}
	args := []string{
		"-name", "guest=" + optValue(spec.Name),
		// Devices on microvm are found through ACPI: the Debian cloud kernel
		// has no virtio-mmio command-line devices (PLATFORM.md §2). Other
		// microvm switches (x-option-roms=off, pit=off, pic=off) measured
		// within noise under TCG on 2026-11-23, so they are left at defaults.
		"-M", "microvm,acpi=on" + memoryMachineOpt(spec, l),
	}
	if accel.KVM {
		args = append(args, "-accel", "kvm", "-cpu", "host")
	} else {
		args = append(args, "-accel", "tcg,thread=multi", "-cpu", "max")
	}
	args = append(args,
		"-m", strconv.FormatInt(spec.MemoryBytes/mib, 10),
	)
	args = append(args, memoryArgs(spec, l)...)
	args = append(args,
		"-smp", strconv.Itoa(spec.VCPUs),
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-kernel", spec.Kernel,
	)
	if spec.Initrd != "" {
		args = append(args, "-initrd", spec.Initrd)
	}
	args = append(args, "-append", kernelCmdline(spec.Cmdline, accel))
	args = append(args,
		"-chardev", "file,id=con0,append=on,path="+optValue(console),
		"-serial", "chardev:con0",
	)
	// The guest numbers virtio devices in command-line order (checked on
	// 2026-11-23 with two disks: vda, vdb as given). The agent's
	// virtio-serial device goes first so its port is /dev/vport0p1 however
	// many disks follow; the agent should still find it by name.
	args = append(args,
		"-device", "virtio-serial-device",
		"-chardev", "socket,id="+agentChardevID+",server=on,wait=off,path="+optValue(filepath.Join(spec.RunDir, agentSocket)),
		"-device", "virtserialport,chardev="+agentChardevID+",name="+channel.PortName+",id="+agentPortID,
	)
	for i, d := range spec.Disks {
		args = append(args, diskArgs(i, d)...)
	}
	args = append(args,
		"-object", "rng-random,id=rng0,filename=/dev/urandom",
		"-device", "virtio-rng-device,rng=rng0",
	)
	if netdev := netdevArg(spec); netdev != "" {
		nic := "virtio-net-device,netdev=net0"
		if spec.MAC != "" {
			nic += ",mac=" + spec.MAC
		}
		args = append(args, "-netdev", netdev, "-device", nic)
	}
	if l.stream != "" {
		args = append(args, "-incoming", "defer")
	}
	args = append(args,
		"-qmp", "unix:"+optValue(filepath.Join(spec.RunDir, qmpSocket))+",server=on,wait=off",
		"-pidfile", filepath.Join(spec.RunDir, pidFile),
		"-daemonize",
	)
	return args, nil
}

// netdevArg is the -netdev value behind the guest's NIC: spec.TAP, or for
// an unlinked NIC a port of a hub nothing else is on (the frontend, which
// is what a migration saves, is the same either way); "" for no NIC.
func netdevArg(spec hypervisor.Spec) string {
	switch {
	case spec.TAP != "":
		return "tap,id=net0,script=no,downscript=no,ifname=" + optValue(spec.TAP)
	case spec.UnlinkedNIC:
		return "hubport,id=net0,hubid=0"
	}
	return ""
}

// memoryMachineOpt names the RAM's memory backend on -M when the RAM is a
// file (memoryArgs).
func memoryMachineOpt(spec hypervisor.Spec, l load) string {
	if spec.MemoryFile == "" && l.memory == "" && !spec.SharedMemory {
		return ""
	}
	return ",memory-backend=" + ramID
}

// memoryArgs backs the guest's RAM with a file: spec.MemoryFile mapped
// shared (a template's source), or a captured memory file mapped
// privately (a clone); or with a memfd mapped shared (spec.SharedMemory,
// read through /proc at a capture, see memfdOf). Otherwise QEMU gives the
// guest anonymous memory.
func memoryArgs(spec hypervisor.Spec, l load) []string {
	path, share := spec.MemoryFile, "on"
	if l.memory != "" {
		path, share = l.memory, "off"
	}
	if path == "" && spec.SharedMemory {
		return []string{"-object", fmt.Sprintf("memory-backend-memfd,id=%s,size=%dM,share=on", ramID, spec.MemoryBytes/mib)}
	}
	if path == "" {
		return nil
	}
	return []string{"-object", fmt.Sprintf("memory-backend-file,id=%s,size=%dM,mem-path=%s,share=%s",
		ramID, spec.MemoryBytes/mib, optValue(path), share)}
}

// diskArgs attaches disk i as a virtio-blk device. The host page cache is
// used (cache=writeback; guest flushes still reach the disk): cache=none
// needs O_DIRECT, which tmpfs refuses. Discards from the guest punch holes,
// so a sparse or reflinked clone stays small.
func diskArgs(i int, d hypervisor.Disk) []string {
	format := d.Format
	if format == "" {
		format = "raw"
	}
	id := fmt.Sprintf("disk%d", i)
	drive := fmt.Sprintf("if=none,id=%s,format=%s,cache=writeback,aio=threads", id, format)
	if d.ReadOnly {
		drive += ",readonly=on"
	} else {
		drive += ",discard=unmap"
	}
	drive += ",file=" + optValue(d.Path)
	return []string{"-drive", drive, "-device", "virtio-blk-device,drive=" + id}
}

// kernelCmdline is the guest kernel's command line: bootArgs, the guest's
// own cmdline, then tsc_early_khz under TCG when the host's TSC frequency
// is known and the guest's part has not set it (see Accel.TSCkHz).
func kernelCmdline(cmdline string, accel Accel) string {
	args := append([]string{}, bootArgs...)
	if cmdline = strings.TrimSpace(cmdline); cmdline != "" {
		args = append(args, cmdline)
	}
	if !accel.KVM && accel.TSCkHz > 0 && !strings.Contains(cmdline, "tsc_early_khz=") {
		args = append(args, "tsc_early_khz="+strconv.FormatInt(accel.TSCkHz, 10))
	}
	return strings.Join(args, " ")
}

// optValue escapes a value for QEMU's comma-separated option syntax, where
// a literal comma is written twice.
func optValue(s string) string {
	return strings.ReplaceAll(s, ",", ",,")
}

// validate reports every problem with spec at once, as api.ErrInvalid:
// those every backend refuses (Spec.Validate) and QEMU's own limits.
func validate(spec hypervisor.Spec) error {
	errs := spec.Problems()
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if spec.MemoryBytes > 0 && spec.MemoryBytes < minMemory {
		bad("memory must be at least %d MiB, got %d bytes", minMemory/mib, spec.MemoryBytes)
	} else if spec.MemoryBytes%mib != 0 {
		bad("memory must be a whole number of MiB, got %d bytes", spec.MemoryBytes)
	}
	if filepath.IsAbs(spec.RunDir) {
		for _, name := range []string{agentSocket, qmpSocket} {
			if p := filepath.Join(spec.RunDir, name); len(p) > maxUnixPath {
				bad("socket path %s is %d bytes, longer than the %d a unix socket allows: use a shorter run dir", p, len(p), maxUnixPath)
			}
		}
	}
	for i, d := range spec.Disks {
		if d.Format != "" && d.Format != "raw" && d.Format != "qcow2" {
			bad("disk %d format %q is not raw or qcow2", i, d.Format)
		}
	}
	if spec.TAP != "" && len(spec.TAP) > maxIfName {
		bad("tap name %q is longer than %d bytes", spec.TAP, maxIfName)
	}
	if spec.MAC != "" {
		// QEMU takes only the six-octet colon form.
		if hw, err := net.ParseMAC(spec.MAC); err != nil || hw.String() != strings.ToLower(spec.MAC) || len(hw) != 6 {
			bad("mac %q is not of the form 52:54:00:12:34:56", spec.MAC)
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: qemu machine %q: %w", api.ErrInvalid, spec.Name, errors.Join(errs...))
}

// ownsCmdline reports whether cmdline, the NUL-separated arguments read
// from /proc/<pid>/cmdline, is that of a qemu that Args built for runDir:
// it names runDir's pidfile. This is how a pid read from a pidfile or a
// store is told apart from an unrelated process that reused it.
func ownsCmdline(cmdline []byte, runDir string) bool {
	want := filepath.Join(runDir, pidFile)
	args := strings.Split(string(cmdline), "\x00")
	for i := 0; i+1 < len(args); i++ {
		if args[i] == "-pidfile" && args[i+1] == want {
			return true
		}
	}
	return false
}
