// Package qemu is the hypervisor backend that runs everywhere: QEMU's
// microvm machine type, under KVM when this host proves it can boot the
// guest kernel with it and under TCG (software emulation) otherwise.
//
// The accelerator is decided once (Backend.DecideAccel, accel.go): a pure
// decision over the answers of fake-able probes (cheap /dev/kvm checks, a
// cached boot probe), and a thin layer asking the real host
// (accel_host.go, accel_linux.go).
//
// A machine is one daemonized qemu-system-x86_64 process that owns a run
// directory:
//
//	<RunDir>/qemu.pid    written by QEMU once the machine is set up
//	<RunDir>/qmp.sock    QMP, driven by the small client in qmp.go
//	<RunDir>/agent.sock  the guest agent's virtio-serial port "slicer.agent"
//
// The guest kernel's command line starts with this machine's own
// arguments (bootArgs), then the guest's (Spec.Cmdline).
//
// Because QEMU daemonizes, the process is not our child: it is watched
// through a pidfd, and a later daemon re-adopts it from the Handle (pid and
// RunDir) with Attach. The process is recognized by its command line, which
// names RunDir/qemu.pid, so a reused pid is never mistaken for a machine.
//
// Suspend and restore are a migration to and from a state directory (see
// suspend.go).
package qemu

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/hypervisor"
)

// binaryName is the QEMU system emulator this backend runs.
const binaryName = "qemu-system-x86_64"

// backendName is the backend's config name (Backend.Name), recorded in
// handles and state manifests.
const backendName = "qemu"

// Backend starts QEMU machines. The zero value is not usable: use New.
type Backend struct {
	// Binary is the path of qemu-system-x86_64.
	Binary string
	// Log receives one line naming the accelerator and why, and warnings.
	Log *slog.Logger
	// CacheDir holds the boot-probe cache (AccelCacheFile); empty keeps
	// no cache, so every auto decision on a KVM host probes.
	CacheDir string
	// ProbeTimeout bounds the boot probe; zero is DefaultProbeTimeout.
	ProbeTimeout time.Duration

	// decideMu is held while deciding, so that concurrent first Starts
	// decide once.
	decideMu sync.Mutex
	mu       sync.Mutex
	decision *AccelDecision
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
func (b *Backend) Name() string { return backendName }

// Check implements hypervisor.Backend: QEMU must be installed. A host
// without KVM is fine (TCG).
func (b *Backend) Check() error {
	if _, err := exec.LookPath(b.Binary); err != nil {
		return fmt.Errorf("%s is not installed: install qemu-system-x86 (apt-get install qemu-system-x86)", b.Binary)
	}
	return nil
}

// DecideAccel decides which accelerator guests of kernel boot with under
// mode (auto, kvm or tcg; see AccelAuto), logs the decision and its
// reason, and keeps it for every later Start. It needs no daemon: a host
// check can call it on its own Backend. Under auto, the cheap KVM checks
// run first; only when they pass is kernel booted under KVM once (a boot
// probe of at most ProbeTimeout), and the verdict cached in CacheDir,
// keyed by the kernel's digest, the host's boot id and QEMU's version.
// It fails for a bad mode, for kvm on a host that fails the checks
// (naming the reason), and when ctx ends during the probe.
func (b *Backend) DecideAccel(ctx context.Context, mode, kernel string) (AccelDecision, error) {
	b.decideMu.Lock()
	defer b.decideMu.Unlock()
	return b.decide(ctx, mode, kernel)
}

// decide is DecideAccel with decideMu held.
func (b *Backend) decide(ctx context.Context, mode, kernel string) (AccelDecision, error) {
	start := time.Now()
	d, err := decideAccel(ctx, mode, kernel, b.probes())
	d.Took = time.Since(start)
	if err != nil {
		return d, err
	}
	attrs := []any{"mode", d.Mode, "reason", d.Reason, "took", d.Took.Round(time.Millisecond)}
	if d.Probe != nil {
		attrs = append(attrs, "probe", d.Probe.Took.Round(time.Millisecond))
	}
	if d.CacheHit {
		attrs = append(attrs, "cache", "hit")
	}
	if d.CacheNote != "" {
		attrs = append(attrs, "cache", d.CacheNote)
	}
	if !d.Accel.KVM {
		attrs = append(attrs, "tsc_khz", d.Accel.TSCkHz)
	}
	b.log().Info("qemu accelerator: "+d.Accelerator, attrs...)
	b.mu.Lock()
	b.decision = &d
	b.mu.Unlock()
	return d, nil
}

// Decision returns the decision DecideAccel (or the first Start) made;
// false before there is one.
func (b *Backend) Decision() (AccelDecision, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.decision == nil {
		return AccelDecision{}, false
	}
	return *b.decision, true
}

// accelFor returns the accelerator to start a machine with: the decision
// made, or, when there is none yet (a Backend used without a daemon), one
// made now for kernel in the mode SLICER_ACCEL names (default auto).
func (b *Backend) accelFor(ctx context.Context, kernel string) (Accel, error) {
	if d, ok := b.Decision(); ok {
		return d.Accel, nil
	}
	b.decideMu.Lock()
	defer b.decideMu.Unlock()
	if d, ok := b.Decision(); ok {
		return d.Accel, nil
	}
	mode, err := AccelModeFrom("", os.Getenv(AccelEnv))
	if err != nil {
		return Accel{}, err
	}
	d, err := b.decide(ctx, mode, kernel)
	if err != nil {
		return Accel{}, err
	}
	return d.Accel, nil
}

// probes returns the host's real probes for this backend.
func (b *Backend) probes() accelProbes {
	p := hostProbes{
		binary: b.Binary, timeout: b.ProbeTimeout,
		modules: "/sys/module", bootID: "/proc/sys/kernel/random/boot_id",
	}
	if p.timeout <= 0 {
		p.timeout = DefaultProbeTimeout
	}
	if b.CacheDir != "" {
		p.cacheFile = filepath.Join(b.CacheDir, AccelCacheFile)
	}
	return p
}

// Start implements hypervisor.Backend. It returns once QEMU has set the
// machine up and daemonized; the guest is then booting. With
// spec.RestoreFrom it returns once the state is loaded and the guest runs
// again. The run directory is created if missing. Start fails with
// api.ErrConflict when a qemu process already runs in spec.RunDir; a
// restore fails as hypervisor.Backend documents, before QEMU starts.
func (b *Backend) Start(ctx context.Context, spec hypervisor.Spec) (hypervisor.Machine, error) {
	if err := validate(spec); err != nil {
		return nil, err
	}
	accel, err := b.accelFor(ctx, spec.Kernel)
	if err != nil {
		return nil, fmt.Errorf("start qemu machine %q: %w", spec.Name, err)
	}
	var l load
	if spec.RestoreFrom != "" {
		if l, err = b.stateToLoad(spec, accel); err != nil {
			return nil, fmt.Errorf("restore qemu machine %q: %w", spec.Name, err)
		}
	}
	args, err := args(spec, accel, l)
	if err != nil {
		return nil, err
	}
	m, err := b.start(ctx, spec.RunDir, args, l)
	if err != nil {
		return nil, fmt.Errorf("start qemu machine %q: %w", spec.Name, err)
	}
	return m, nil
}

// stateToLoad returns what to restore spec from: the migration stream of
// the state directory spec.RestoreFrom, once its manifest has been
// checked against spec (hypervisor.OpenState), and its memory file when
// the stream holds device state only (a capture of a machine with a
// memory file). A regular file there is a state an earlier daemon saved,
// before state directories: the bare migration stream, which has no
// manifest to check, and which QEMU loads as it is, so that a VM
// suspended before an upgrade still comes back.
func (b *Backend) stateToLoad(spec hypervisor.Spec, accel Accel) (load, error) {
	if fi, err := os.Stat(spec.RestoreFrom); err == nil && fi.Mode().IsRegular() {
		b.log().Info("restoring from a state file saved before state directories: not checked against the machine", "state", spec.RestoreFrom)
		return load{stream: spec.RestoreFrom}, nil
	}
	format := stateFormat
	if man, err := hypervisor.ReadManifest(spec.RestoreFrom); err == nil && man.Format == sharedMemoryFormat {
		format = sharedMemoryFormat
	}
	man, err := hypervisor.OpenState(spec.RestoreFrom, b.Name(), format, hypervisor.ShapeOf(spec, accel.String()))
	if err != nil {
		return load{}, err
	}
	mem, ok := man.File(hypervisor.HoldsMemory)
	if !ok {
		return load{}, fmt.Errorf("%w: state %s: the manifest names no file holding memory", api.ErrInvalid, spec.RestoreFrom)
	}
	dev, ok := man.File(hypervisor.HoldsDevices)
	if !ok {
		return load{}, fmt.Errorf("%w: state %s: the manifest names no file holding device state", api.ErrInvalid, spec.RestoreFrom)
	}
	l := load{stream: filepath.Join(spec.RestoreFrom, dev)}
	if mem != dev {
		if format != sharedMemoryFormat {
			return load{}, fmt.Errorf("%w: state %s: format %q keeps memory and devices in one stream", api.ErrInvalid, spec.RestoreFrom, format)
		}
		l.memory = filepath.Join(spec.RestoreFrom, mem)
	}
	return l, nil
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

func (b *Backend) log() *slog.Logger {
	if b.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return b.Log
}
