package daemon

import (
	"fmt"
	"log/slog"
	"os"
	"os/exec"

	"github.com/openslicer/openslicer/internal/hypervisor/qemu"
)

var execLookPath = exec.LookPath

// defaultHypervisor is the backend this host can run: QEMU everywhere;
// Firecracker and Cloud Hypervisor are not built yet.
func defaultHypervisor() string { return "qemu" }

// canRun reports, in one sentence naming the fix, why this host cannot run
// the named hypervisor.
func canRun(name string) error {
	switch name {
	case "qemu":
		return qemu.New(nil).Check()
	case "firecracker", "cloud-hypervisor":
		if _, err := os.Stat("/dev/kvm"); err != nil {
			return fmt.Errorf("%s needs KVM and this host has no /dev/kvm: use hypervisor: qemu", name)
		}
		return fmt.Errorf("the %s backend is not implemented yet: use hypervisor: qemu", name)
	default:
		return fmt.Errorf("unknown hypervisor %q: use qemu", name)
	}
}

// newBackend returns the backend for a validated hypervisor name, keeping
// its accelerator cache in cacheDir (the image directory, beside the
// kernels the cache is about).
func newBackend(name, cacheDir string, log *slog.Logger) (*qemu.Backend, error) {
	if name != "qemu" {
		return nil, canRun(name)
	}
	b := qemu.New(log)
	b.CacheDir = cacheDir
	if err := b.Check(); err != nil {
		return nil, err
	}
	return b, nil
}
