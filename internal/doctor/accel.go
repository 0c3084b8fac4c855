package doctor

import (
	"context"
	"os"
	"path/filepath"
	"strings"
)

// DefaultAccel is the accelerator row when Options.Accel is nil.
//
// PLACEHOLDER: it only looks at /dev/kvm and at which KVM modules are
// loaded; it boots nothing. The real decision (auto|kvm|tcg, the cheap
// /dev/kvm checks, the cached boot probe, --accel and SLICER_ACCEL) lives
// in internal/hypervisor/qemu; the wiring of `slicer doctor` is to pass
// that decision as Options.Accel, after which this function can go.
func DefaultAccel(ctx context.Context) Result {
	return accelResult(readKVMFacts("/dev/kvm", "/sys/module"))
}

// kvmFacts are what DefaultAccel looks at.
type kvmFacts struct {
	Exists  bool
	OpenErr error           // opening /dev/kvm read-write
	Modules map[string]bool // which of kvm_intel, kvm_amd, kvm_pvm are loaded (or built in)
}

func readKVMFacts(dev, sysModule string) kvmFacts {
	f := kvmFacts{Modules: map[string]bool{}}
	if _, err := os.Stat(dev); err != nil {
		return f
	}
	f.Exists = true
	if fd, err := os.OpenFile(dev, os.O_RDWR, 0); err != nil {
		f.OpenErr = err
	} else {
		fd.Close()
	}
	for _, m := range []string{"kvm_intel", "kvm_amd", "kvm_pvm"} {
		if _, err := os.Stat(filepath.Join(sysModule, m)); err == nil {
			f.Modules[m] = true
		}
	}
	return f
}

// accelResult says which accelerator the facts point to. TCG always works,
// so this row never blocks; it warns when guests will run emulated.
func accelResult(f kvmFacts) Result {
	r := Result{Check: "accelerator"}
	const note = " (placeholder check: no boot probe)"
	hw := []string{}
	for _, m := range []string{"kvm_intel", "kvm_amd"} {
		if f.Modules[m] {
			hw = append(hw, m)
		}
	}
	switch {
	case !f.Exists:
		r.Status, r.Detail = Warn, "tcg: no /dev/kvm, guests run in software emulation"+note
		r.Fix = "for speed: enable hardware virtualization (or nested virtualization) and load kvm_intel or kvm_amd"
	case f.OpenErr != nil:
		r.Status, r.Detail = Warn, "tcg: /dev/kvm does not open read-write: "+f.OpenErr.Error()+note
		r.Fix = "run slicer up as root, or give its user access to /dev/kvm (the kvm group)"
	case len(hw) > 0:
		r.Status, r.Detail = OK, "kvm: /dev/kvm opens and "+strings.Join(hw, ", ")+" is loaded"+note
	case f.Modules["kvm_pvm"]:
		r.Status, r.Detail = Warn, "tcg: /dev/kvm is served by kvm_pvm, which boots only PVM guest kernels"+note
		r.Fix = "none needed (guests run under TCG); a host with kvm_intel or kvm_amd runs them faster"
	default:
		r.Status, r.Detail = Warn, "tcg: /dev/kvm opens but neither kvm_intel nor kvm_amd is loaded"+note
		r.Fix = "for speed: load kvm_intel or kvm_amd"
	}
	return r
}
