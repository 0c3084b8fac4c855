package doctor

import (
	"fmt"
	"strings"
	"time"

	"github.com/openslicer/openslicer/internal/hypervisor/qemu"
)

// AccelResult is the accelerator row: the decision `slicer up` would make
// on this host (qemu.Backend.DecideAccel), or the error it would stop
// with. TCG always works, so only an error (kvm forced on a host that
// fails the checks) blocks; TCG warns, because guests then run emulated.
// probed is false when no guest kernel was there to probe with (none is
// built yet).
func AccelResult(d qemu.AccelDecision, err error, probed bool) Result {
	r := Result{Check: "accelerator"}
	checks := checkList(d.Checks)
	switch {
	case err != nil && !probed && d.Mode == qemu.AccelAuto:
		// auto stops short of the probe only when the checks pass.
		r.Status = Warn
		r.Detail = "the KVM checks pass" + checks + "; no guest kernel is built yet, so a boot probe at the first `slicer up` decides between kvm and tcg"
		r.Fix = "run `slicer image build`, then `slicer doctor` again, to see the probe's verdict"
	case err != nil:
		r.Status, r.Detail = Fail, err.Error()
		r.Fix = "use --accel auto (or tcg), or SLICER_ACCEL=auto"
	case d.Accelerator == "kvm":
		r.Status, r.Detail = OK, "kvm: "+d.Reason+probeNote(d)+checks
	default:
		r.Status, r.Detail = Warn, "tcg: "+d.Reason+checks
		r.Fix = "none needed, guests run under TCG; a host with kvm_intel or kvm_amd and a usable /dev/kvm runs them far faster"
	}
	return r
}

// checkList renders the checks that ran, " [name ok; name FAILED]".
func checkList(cs []qemu.AccelCheck) string {
	if len(cs) == 0 {
		return ""
	}
	parts := make([]string, len(cs))
	for i, c := range cs {
		verdict := "ok"
		if !c.OK {
			verdict = "FAILED"
		}
		parts[i] = c.Name + ": " + verdict
	}
	return " [" + strings.Join(parts, "; ") + "]"
}

func probeNote(d qemu.AccelDecision) string {
	switch {
	case d.CacheHit:
		return " (boot probe verdict from the cache)"
	case d.Probe != nil:
		return fmt.Sprintf(" (boot probe took %s)", d.Probe.Took.Round(time.Millisecond))
	}
	return ""
}
