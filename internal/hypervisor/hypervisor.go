// Package hypervisor is the vocabulary every VM backend shares: the Spec of a
// machine to boot, the Backend that boots it, and the Machine it returns.
//
// Implementations live in subpackages (qemu; firecracker and
// cloud-hypervisor later). This package imports only the standard library.
package hypervisor

import (
	"context"
	"errors"
	"net"
)

// ErrUnsupported is returned by operations a backend cannot perform.
var ErrUnsupported = errors.New("not supported by this hypervisor")

// Disk is a block device attached to a machine, in order: the first is vda.
type Disk struct {
	Path     string
	ReadOnly bool
	Format   string // "raw" (default) or "qcow2"
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
	Cmdline     string
	Disks       []Disk
	// RunDir is a directory owned by this machine for sockets and pidfiles.
	RunDir string
	// ConsoleLog is the file the serial console is written to.
	ConsoleLog string
	// TAP is the host TAP device for the guest's NIC; empty means no NIC.
	TAP string
	MAC string
	// Incoming, when set, is a state file written by Machine.Suspend: Start
	// then restores the machine from it instead of booting the kernel, and
	// returns once the machine runs again, its memory, processes and
	// devices as they were. The rest of the Spec must describe the same
	// machine as when it was suspended (VCPUs, MemoryBytes, Kernel, Initrd,
	// the same Disks in the same order, TAP); the disks must be the same
	// files, unchanged since. The file may be removed once Start returns.
	Incoming string
}

// Handle is what the daemon records in its store about a running machine,
// enough for Backend.Attach to re-adopt it after a daemon restart.
type Handle struct {
	Backend string `json:"backend"`
	PID     int    `json:"pid"`
	RunDir  string `json:"run_dir"`
}

// Backend boots machines.
type Backend interface {
	// Name is the config name of the backend, e.g. "qemu".
	Name() string
	// Check reports, in one sentence that names the fix, why this host cannot
	// run the backend; nil when it can.
	Check() error
	// Start boots a machine, or restores it when spec.Incoming is set
	// (ErrUnsupported from backends that cannot). The machine outlives ctx;
	// ctx bounds only the start itself.
	Start(ctx context.Context, spec Spec) (Machine, error)
	// Attach re-adopts a machine started by an earlier daemon.
	Attach(ctx context.Context, h Handle) (Machine, error)
	// Reclaim kills every process a machine with run directory runDir
	// left, and waits for them to exit: also those of a start that was cut
	// short (the daemon killed while the machine was starting), which
	// have no Handle yet. Nothing left is not an error.
	Reclaim(ctx context.Context, runDir string) error
}

// Machine is a running (or exited) VM process.
type Machine interface {
	Handle() Handle
	// DialAgent opens the byte stream to the guest agent.
	DialAgent(ctx context.Context) (net.Conn, error)
	// Done is closed once the VM process has exited.
	Done() <-chan struct{}
	// Kill stops the VM process at once and waits for it to exit.
	Kill(ctx context.Context) error
	// Shutdown asks the guest to power off (ACPI); it does not wait.
	Shutdown(ctx context.Context) error
	Pause(ctx context.Context) error
	Resume(ctx context.Context) error
	// Suspend saves the machine's memory and device state to statePath
	// (created, or replaced, only once complete), after which the VM
	// process exits, freeing its memory, and Done closes. Connections from
	// DialAgent are closed first, and new ones refused while it runs.
	// Spec.Incoming brings the machine back, running. When Suspend fails
	// the machine is left running (or paused, as it was). Backends that
	// cannot return ErrUnsupported.
	Suspend(ctx context.Context, statePath string) error
}
