// Package qemu is the hypervisor backend that runs everywhere: QEMU's
// microvm machine type, under KVM when /dev/kvm is usable and under TCG
// (software emulation) otherwise.
//
// A machine is one daemonized qemu-system-x86_64 process that owns a run
// directory:
//
//	<RunDir>/qemu.pid    written by QEMU once the machine is set up
//	<RunDir>/qmp.sock    QMP, driven by the small client in qmp.go
//	<RunDir>/agent.sock  the guest agent's virtio-serial port "slicer.agent"
//
// Because QEMU daemonizes, the process is not our child: it is watched
// through a pidfd, and a later daemon re-adopts it from the Handle (pid and
// RunDir) with Attach. The process is recognized by its command line, which
// names RunDir/qemu.pid, so a reused pid is never mistaken for a machine.
//
// Suspend and restore are a migration to and from a state file (see
// suspend.go).
package qemu

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/hypervisor"
)

// binaryName is the QEMU system emulator this backend runs.
const binaryName = "qemu-system-x86_64"

// Backend starts QEMU machines. The zero value is not usable: use New.
type Backend struct {
	// Binary is the path of qemu-system-x86_64.
	Binary string
	// Log receives one line naming the accelerator, and warnings.
	Log *slog.Logger

	accelOnce sync.Once
	accel     Accel
}

var _ hypervisor.Backend = (*Backend)(nil)

// New returns a Backend running the qemu-system-x86_64 found in PATH. A nil
// log discards.
func New(log *slog.Logger) *Backend {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	bin := binaryName
	if p, err := exec.LookPath(bin); err == nil {
		bin = p
	}
	return &Backend{Binary: bin, Log: log}
}

// Name implements hypervisor.Backend.
func (b *Backend) Name() string { return "qemu" }

// Check implements hypervisor.Backend: QEMU must be installed. A host
// without KVM is fine (TCG).
func (b *Backend) Check() error {
	if _, err := exec.LookPath(b.Binary); err != nil {
		return fmt.Errorf("%s is not installed: install qemu-system-x86 (apt-get install qemu-system-x86)", b.Binary)
	}
	return nil
}

// Accel returns the accelerator this backend boots with, probing the host
// on the first call (DetectAccel) and logging the answer once.
func (b *Backend) Accel() Accel {
	b.accelOnce.Do(func() {
		b.accel = DetectAccel()
		if b.accel.KVM {
			b.log().Info("qemu accelerator: kvm")
		} else {
			b.log().Info("qemu accelerator: tcg (no usable /dev/kvm; guests run in software emulation)",
				"tsc_khz", b.accel.TSCkHz)
		}
	})
	return b.accel
}

// DetectAccel probes the host: KVM when /dev/kvm opens read-write,
// otherwise TCG with the host's TSC frequency, which takes about 60 ms to
// measure (see Accel.TSCkHz).
func DetectAccel() Accel {
	if f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0); err == nil {
		f.Close()
		return Accel{KVM: true}
	}
	return Accel{TSCkHz: measureTSCkHz()}
}

// Start implements hypervisor.Backend. It returns once QEMU has set the
// machine up and daemonized; the guest is then booting. With
// spec.Incoming it returns once the state is loaded and the guest runs
// again. The run directory is created if missing. Start fails with
// api.ErrConflict when a qemu process already runs in spec.RunDir, and
// with api.ErrNotFound when the state file is missing.
func (b *Backend) Start(ctx context.Context, spec hypervisor.Spec) (hypervisor.Machine, error) {
	args, err := Args(spec, b.Accel())
	if err != nil {
		return nil, err
	}
	if spec.Incoming != "" {
		if err := checkStateFile(spec.Incoming); err != nil {
			return nil, fmt.Errorf("restore qemu machine %q: %w", spec.Name, err)
		}
	}
	m, err := b.start(ctx, spec.RunDir, args, spec.Incoming != "")
	if err != nil {
		return nil, fmt.Errorf("start qemu machine %q: %w", spec.Name, err)
	}
	return m, nil
}

// Attach implements hypervisor.Backend. It re-adopts the qemu process of
// h; when that process is gone (or its pid now belongs to something else)
// the error wraps api.ErrNotFound. A zero h.PID is read from the pidfile.
func (b *Backend) Attach(ctx context.Context, h hypervisor.Handle) (hypervisor.Machine, error) {
	if h.Backend != "" && h.Backend != b.Name() {
		return nil, fmt.Errorf("%w: handle of backend %q given to qemu", api.ErrInvalid, h.Backend)
	}
	if !filepath.IsAbs(h.RunDir) {
		return nil, fmt.Errorf("%w: handle run dir %q is not an absolute path", api.ErrInvalid, h.RunDir)
	}
	m, err := b.attach(ctx, h)
	if err != nil {
		return nil, fmt.Errorf("attach qemu machine in %s: %w", h.RunDir, err)
	}
	return m, nil
}

// Reclaim implements hypervisor.Backend: every qemu process whose command
// line names runDir's pidfile is killed (the launcher of a start that was
// cut short, and the machine it daemonized), looking again until none is
// left, since a launcher may fork its machine between two looks.
func (b *Backend) Reclaim(ctx context.Context, runDir string) error {
	if !filepath.IsAbs(runDir) {
		return fmt.Errorf("%w: run dir %q is not an absolute path", api.ErrInvalid, runDir)
	}
	if err := reclaim(ctx, runDir); err != nil {
		return fmt.Errorf("reclaim qemu processes of %s: %w", runDir, err)
	}
	return nil
}

// checkStateFile checks that path is a regular file, so that a missing
// one is reported as such rather than as QEMU failing to load it.
func checkStateFile(path string) error {
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("state file %s: %w", path, api.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%w: state file %s is not a regular file", api.ErrInvalid, path)
	}
	return nil
}

func (b *Backend) log() *slog.Logger {
	if b.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return b.Log
}
