// Package hypervisor is the vocabulary every VM backend shares: the Spec of a
// machine to boot, the Backend that boots it, the Machine it returns, the
// Handle that lets a later daemon re-adopt it, and the state directory a
// suspended machine is saved to (state.go).
//
// Implementations live in subpackages (qemu; firecracker and
// cloud-hypervisor later). Every backend is held to one conformance suite,
// hypervisortest.Run: the doc comments of Backend and Machine are the
// contract it checks. This package imports only the standard library,
// golang.org/x/sys (an atomic directory exchange) and the api error
// classes.
package hypervisor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"

	"github.com/openslicer/openslicer/api"
)

// ErrUnsupported is returned by operations a backend cannot perform.
var ErrUnsupported = errors.New("not supported by this hypervisor")

// Disk is a block device attached to a machine, in order: the first is vda.
type Disk struct {
	Path     string `json:"path"`
	ReadOnly bool   `json:"read_only,omitempty"`
	Format   string `json:"format"` // "raw" (default) or "qcow2"
}

// Spec is everything a backend needs to boot one machine.
type Spec struct {
	// ID is unique per VM for the life of the daemon's store; backends use it
	// to tell their own processes apart from others.
	ID string
	// Name is the guest hostname.
	Name        string
	VCPUs       int
	MemoryBytes int64
	Kernel      string
	Initrd      string
	// Cmdline is the guest's part of the kernel command line: what the
	// guest itself reads (its hostname, its network, the agent's slicer.*
	// parameters, a host group's kernel_args). Each backend puts its own
	// arguments for the machine it emulates (console device, reboot and
	// panic behaviour, drivers to skip) in front of it, so that Cmdline,
	// read later by the kernel, wins where both set the same argument.
	Cmdline string
	Disks   []Disk
	// RunDir is a directory owned by this machine for sockets and pidfiles.
	RunDir string
	// ConsoleLog is the file the serial console is written to.
	ConsoleLog string
	// TAP is the host TAP device for the guest's NIC; empty means no NIC,
	// unless UnlinkedNIC.
	TAP string
	MAC string
	// UnlinkedNIC gives the guest a NIC that no host device backs: what
	// it sends goes nowhere. It is a snapshot template's, whose clones
	// need a NIC in the captured devices and each get a TAP of their own
	// at restore. It excludes TAP.
	UnlinkedNIC bool
	// RestoreFrom, when set, is a state directory written by
	// Machine.Suspend (see state.go): Start then restores the machine from
	// it instead of booting the kernel, and returns once the machine runs
	// again, its memory, processes and devices as they were. The rest of
	// the Spec must describe the same machine as when it was suspended:
	// Start checks it against the directory's manifest (CheckState) before
	// anything runs. The disks must also be the same files, unchanged
	// since, which no manifest can check. The directory may be removed
	// (RemoveState) once Start returns. A backend may also accept older
	// forms of its own saved state here (the qemu package documents one).
	RestoreFrom string
	// MemoryFile, when set, backs the guest's RAM with this file (created
	// if missing), mapped shared: what the guest writes reaches the file.
	// A Capture of such a machine writes only its device state and makes
	// the file the state's memory, which restores then map privately
	// (copy-on-write), so that their unmodified pages stay shared in the
	// host's page cache. It is how a snapshot template's source runs (see
	// capture.go).
	MemoryFile string
	// SharedMemory keeps the guest's RAM in anonymous shared memory that
	// the backend can read while the machine runs. A Capture that resumes
	// the machine then copies it, with the vCPUs stopped, into the state
	// as its memory file, instead of writing it into a migration stream,
	// and restores map that file privately, as a template's clones do: a
	// fork starts without loading its memory. It excludes MemoryFile. A
	// restore of a suspended machine loads its memory into it; a restore
	// of a captured state that has a memory file maps that file instead.
	SharedMemory bool
}

// Validate reports the problems of spec that every backend refuses
// (Problems), as one api.ErrInvalid naming each.
func (s Spec) Validate() error {
	errs := s.Problems()
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: machine %q: %w", api.ErrInvalid, s.Name, errors.Join(errs...))
}

// Problems lists what every backend refuses in spec; backends add their
// own limits to it.
func (s Spec) Problems() []error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if s.VCPUs < 1 {
		bad("vcpus must be at least 1, got %d", s.VCPUs)
	}
	if s.MemoryBytes <= 0 {
		bad("memory must be positive, got %d bytes", s.MemoryBytes)
	}
	if s.Kernel == "" {
		bad("kernel is not set")
	}
	if !filepath.IsAbs(s.RunDir) {
		bad("run dir %q is not an absolute path", s.RunDir)
	}
	for i, d := range s.Disks {
		if d.Path == "" {
			bad("disk %d has no path", i)
		}
	}
	if s.MemoryFile != "" && !filepath.IsAbs(s.MemoryFile) {
		bad("memory file %q is not an absolute path", s.MemoryFile)
	}
	if s.MemoryFile != "" && s.RestoreFrom != "" {
		bad("a machine restored from a state cannot also have a memory file")
	}
	if s.RestoreFrom != "" && !filepath.IsAbs(s.RestoreFrom) {
		bad("state directory %q is not an absolute path", s.RestoreFrom)
	}
	if s.SharedMemory && s.MemoryFile != "" {
		bad("shared memory excludes a memory file")
	}
	if s.UnlinkedNIC && s.TAP != "" {
		bad("a NIC with a TAP (%q) is not unlinked", s.TAP)
	}
	return errs
}

// Handle is what the daemon records in its store about a running machine,
// enough for Backend.Attach to re-adopt it after a daemon restart. Backend
// names the backend that started it: a daemon re-adopts a machine only
// through that one.
type Handle struct {
	Backend string `json:"backend"`
	PID     int    `json:"pid"`
	RunDir  string `json:"run_dir"`
}

// Backend boots machines. Its contract, which hypervisortest.Run checks:
//
//   - Name is the config name of the backend ("qemu"), the one recorded
//     in Handle.Backend and in the manifests of its state directories.
//   - Check reports, in one sentence that names the fix, why this host
//     cannot run the backend; nil when it can.
//   - Start boots spec and returns once the machine runs (the guest may
//     still be booting). The machine outlives ctx; ctx bounds only the
//     start, and a start cut short leaves nothing running. A spec the
//     backend refuses is api.ErrInvalid, before anything runs; a machine
//     already running in spec.RunDir is api.ErrConflict. With
//     spec.RestoreFrom it restores instead (see Spec.RestoreFrom): a
//     missing directory is api.ErrNotFound, one that is not a state
//     directory (no readable manifest) api.ErrInvalid, and one saved by
//     another backend, by a newer format, or from a machine of another
//     shape api.ErrConflict naming the differences, all before anything
//     runs. Backends that cannot restore return ErrUnsupported.
//   - Attach re-adopts a machine started by this or an earlier daemon, on
//     any Backend value of the same name (a daemon restart creates a new
//     one): the machine it returns behaves as the one Start returned. A
//     machine that is gone (or never was) is api.ErrNotFound; a handle of
//     another backend, or a malformed one, api.ErrInvalid.
//   - Reclaim kills every process a machine with run directory runDir
//     left, and waits for them to exit: also those of a start that was cut
//     short (the daemon killed while the machine was starting), which
//     have no Handle yet. Nothing left is not an error.
type Backend interface {
	Name() string
	Check() error
	Start(ctx context.Context, spec Spec) (Machine, error)
	Attach(ctx context.Context, h Handle) (Machine, error)
	Reclaim(ctx context.Context, runDir string) error
}

// Machine is a running (or exited) VM. Its contract, which
// hypervisortest.Run checks:
//
//   - Handle names the backend, and is enough for Backend.Attach.
//   - DialAgent opens a byte stream to the guest agent's channel. It may
//     succeed before the guest listens: bytes then wait until it does.
//   - Done is closed once the machine has ended, whatever ended it: the
//     guest powering off or rebooting (a reboot ends the machine too),
//     Kill, Suspend, or the process dying of something else.
//   - Kill ends the machine at once and waits until Done is closed; on a
//     machine that has ended it does nothing and returns nil.
//   - Shutdown asks the guest to power off (the ACPI power button or the
//     backend's equivalent) and does not wait: a guest may ignore it.
//   - Pause stops the vCPUs (the guest answers nothing until Resume);
//     Resume runs them again. Memory stays allocated.
//   - Suspend saves the machine to a state directory (see state.go),
//     after which the machine ends, freeing its memory, and Done closes.
//     The directory is created, or replaced, only once complete; when
//     Suspend fails, no directory is left and the machine keeps running
//     (or paused, as it was). Connections from DialAgent are closed
//     first, and new ones refused while it runs. Spec.RestoreFrom brings
//     the machine back, running. Backends that cannot return
//     ErrUnsupported.
//   - On a machine that has ended, DialAgent, Shutdown, Pause, Resume and
//     Suspend fail with api.ErrConflict.
type Machine interface {
	Handle() Handle
	DialAgent(ctx context.Context) (net.Conn, error)
	Done() <-chan struct{}
	Kill(ctx context.Context) error
	Shutdown(ctx context.Context) error
	Pause(ctx context.Context) error
	Resume(ctx context.Context) error
	Suspend(ctx context.Context, stateDir string) error
}
