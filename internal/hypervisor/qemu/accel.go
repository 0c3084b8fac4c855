package qemu

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"time"

	"github.com/openslicer/openslicer/api"
)

// Accelerator modes, as `slicer up --accel` and SLICER_ACCEL take them.
const (
	// AccelAuto uses KVM only when this host proves it can boot the
	// guest kernel with it: the cheap checks pass and a boot probe (or
	// its cached verdict) shows the kernel printing under KVM. Otherwise
	// TCG.
	AccelAuto = "auto"
	// AccelKVM insists on KVM: a host that fails the cheap checks is a
	// start-up error. The boot probe is skipped; the boot watchdog of
	// each create catches a kernel that does not run.
	AccelKVM = "kvm"
	// AccelTCG uses software emulation without probing anything.
	AccelTCG = "tcg"
)

// AccelEnv is the environment variable that sets the accelerator mode
// when no flag does.
const AccelEnv = "SLICER_ACCEL"

// AccelModes are the accepted modes, in the order they are documented.
var AccelModes = []string{AccelAuto, AccelKVM, AccelTCG}

// kvmAPIVersion is the only KVM API version there has ever been (and
// what QEMU requires).
const kvmAPIVersion = 12

// KVM module names as they appear under /sys/module.
const (
	moduleIntel = "kvm_intel"
	moduleAMD   = "kvm_amd"
	modulePVM   = "kvm_pvm"
)

// Names of the checks an AccelDecision lists, in the order they run.
const (
	CheckDevKVM     = "/dev/kvm opens read-write"
	CheckAPIVersion = "KVM_GET_API_VERSION is 12"
	CheckCreateVM   = "KVM_CREATE_VM works"
	CheckHWModule   = "hardware KVM module loaded (kvm_intel or kvm_amd)"
	CheckBootProbe  = "the guest kernel prints under KVM (boot probe)"
)

// ParseAccelMode checks an accelerator mode; "" is auto. A bad value is
// api.ErrInvalid naming the accepted ones.
func ParseAccelMode(s string) (string, error) {
	if s == "" {
		return AccelAuto, nil
	}
	if !slices.Contains(AccelModes, s) {
		return "", fmt.Errorf("%w: accelerator %q: want one of %s", api.ErrInvalid, s, strings.Join(AccelModes, ", "))
	}
	return s, nil
}

// AccelModeFrom returns the mode the operator asked for: the flag value
// when set, else the environment's (SLICER_ACCEL), else auto. A bad value
// names where it came from and the accepted ones.
func AccelModeFrom(flag, env string) (string, error) {
	if flag != "" {
		m, err := ParseAccelMode(flag)
		if err != nil {
			return "", fmt.Errorf("--accel: %w", err)
		}
		return m, nil
	}
	m, err := ParseAccelMode(env)
	if err != nil {
		return "", fmt.Errorf("%s: %w", AccelEnv, err)
	}
	return m, nil
}

// AccelDecision is which accelerator QEMU boots guests with, and why.
type AccelDecision struct {
	// Accel is what Args is given.
	Accel Accel `json:"-"`
	// Accelerator is "kvm" or "tcg" (Accel.String()).
	Accelerator string `json:"accelerator"`
	// Mode is the mode asked for: auto, kvm or tcg.
	Mode string `json:"mode"`
	// Reason is one sentence saying why Accelerator was chosen.
	Reason string `json:"reason"`
	// Checks are the checks that ran, in order, each passed or failed.
	// Mode tcg runs none.
	Checks []AccelCheck `json:"checks,omitempty"`
	// Probe is the boot probe that ran for this decision; nil when none
	// ran (the checks failed, the mode skips it, or the cache answered).
	Probe *BootProbe `json:"probe,omitempty"`
	// CacheHit is set when the boot probe's verdict came from the cache.
	CacheHit bool `json:"cache_hit,omitempty"`
	// CacheNote says why the verdict could not be read from or written
	// to the cache; empty when that worked or was not needed.
	CacheNote string `json:"cache_note,omitempty"`
	// Took is how long the whole decision took (checks, cache, probe,
	// and under TCG the TSC measurement).
	Took time.Duration `json:"took_ns"`
}

// AccelCheck is one check of an AccelDecision.
type AccelCheck struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail,omitempty"`
}

// KVMHost is what the cheap checks found out about this host's KVM.
type KVMHost struct {
	// OpenErr is why /dev/kvm did not open read-write; nil when it did.
	// It wraps fs.ErrNotExist when there is no /dev/kvm.
	OpenErr error
	// APIVersion is the answer to KVM_GET_API_VERSION, or APIErr why it
	// failed. Both are zero when /dev/kvm did not open.
	APIVersion int
	APIErr     error
	// CreateVMErr is why KVM_CREATE_VM failed; nil when it worked or was
	// not tried (/dev/kvm did not open, or the API version was wrong).
	CreateVMErr error
	// Modules are the KVM modules loaded (kvm_intel, kvm_amd, kvm_pvm) as
	// found under /sys/module.
	Modules []string
}

// BootProbe is the outcome of booting the guest kernel under KVM, with no
// disks, until it prints its first line.
type BootProbe struct {
	// OK is set when the kernel printed its banner in time.
	OK bool `json:"ok"`
	// Took is the time from starting QEMU to the banner, or to giving up.
	Took time.Duration `json:"took_ns"`
	// Line is the kernel line seen.
	Line string `json:"line,omitempty"`
	// Why says why the probe failed: nothing in time, or QEMU's error.
	Why string `json:"why,omitempty"`
	// Output is the tail of what the console and QEMU printed when the
	// probe failed (a PVM host prints the real-mode stub's "Probing EDD"
	// and nothing more).
	Output string `json:"output,omitempty"`
}

// accelCacheKey is what a cached boot-probe verdict depends on: the
// kernel, the host as booted (modules, firmware settings) and QEMU.
type accelCacheKey struct {
	KernelSHA256 string `json:"kernel_sha256"`
	BootID       string `json:"boot_id"`
	QEMUVersion  string `json:"qemu_version"`
}

// probeVerdict is the cached result of a boot probe.
type probeVerdict struct {
	KVM      bool      `json:"kvm"`
	Reason   string    `json:"reason"`
	ProbeMS  int64     `json:"probe_ms"`
	ProbedAt time.Time `json:"probed_at"`
}

// accelCacheEntry is one cached verdict with its key.
type accelCacheEntry struct {
	accelCacheKey
	probeVerdict
}

// accelCache is the content of the cache file: one verdict per kernel.
type accelCache struct {
	Entries []accelCacheEntry `json:"entries"`
	// Files remembers the kernel digests and QEMU versions computed for
	// the key, with the identity of the file each came from, so a later
	// start computes them again only when a file changed (hostProbes).
	Files []fileMemo `json:"files,omitempty"`
}

// fileMemo is a value computed from a file (a digest, a version string),
// kept with the identity the file had.
type fileMemo struct {
	fileID
	Value string `json:"value"`
}

// fileID identifies a file's content without reading it: replacing or
// rewriting a file changes its inode, size, mtime or ctime (and ctime
// cannot be set back).
type fileID struct {
	Path    string `json:"path"`
	Dev     uint64 `json:"dev"`
	Ino     uint64 `json:"ino"`
	Size    int64  `json:"size"`
	MtimeNS int64  `json:"mtime_ns"`
	CtimeNS int64  `json:"ctime_ns"`
}

// lookup returns the verdict stored for exactly key.
func (c accelCache) lookup(key accelCacheKey) (probeVerdict, bool) {
	for _, e := range c.Entries {
		if e.accelCacheKey == key {
			return e.probeVerdict, true
		}
	}
	return probeVerdict{}, false
}

// put stores v for key, replacing any verdict for the same kernel and
// dropping those from an earlier host boot, which can never match again.
func (c accelCache) put(key accelCacheKey, v probeVerdict) accelCache {
	out := accelCache{Entries: []accelCacheEntry{}, Files: c.Files}
	for _, e := range c.Entries {
		if e.BootID == key.BootID && e.KernelSHA256 != key.KernelSHA256 {
			out.Entries = append(out.Entries, e)
		}
	}
	out.Entries = append(out.Entries, accelCacheEntry{key, v})
	return out
}

// accelProbes are the questions the decision asks of the host; the real
// ones are hostProbes, tests give fakes.
type accelProbes interface {
	// KVM runs the cheap checks.
	KVM() KVMHost
	// CacheKey computes the key of a cached verdict for kernel.
	CacheKey(kernel string) (accelCacheKey, error)
	// LoadCache reads the cache; a missing cache is empty, not an error.
	LoadCache() (accelCache, error)
	// SaveCache replaces the cache.
	SaveCache(accelCache) error
	// BootProbe boots kernel under KVM until it prints, or gives up.
	BootProbe(ctx context.Context, kernel string) BootProbe
	// TSCkHz measures the host's TSC frequency (for TCG guests).
	TSCkHz() int64
}

// decideAccel decides the accelerator for mode and kernel by asking p. It
// fails for a bad mode, when kvm is forced on a host that fails the cheap
// checks, and when ctx ends during the boot probe (which is then not
// cached). Everything else ends in a decision.
func decideAccel(ctx context.Context, mode, kernel string, p accelProbes) (AccelDecision, error) {
	d := AccelDecision{Mode: mode}
	tcg := func(reason string) (AccelDecision, error) {
		d.Accel = Accel{TSCkHz: p.TSCkHz()}
		d.Accelerator, d.Reason = d.Accel.String(), reason
		return d, nil
	}
	kvm := func(reason string) (AccelDecision, error) {
		d.Accel = Accel{KVM: true}
		d.Accelerator, d.Reason = d.Accel.String(), reason
		return d, nil
	}
	switch mode {
	case AccelTCG:
		return tcg("tcg was asked for (--accel tcg or SLICER_ACCEL=tcg): no KVM checks run")
	case AccelKVM, AccelAuto:
	default:
		_, err := ParseAccelMode(mode)
		if err == nil {
			err = fmt.Errorf("%w: accelerator mode %q", api.ErrInvalid, mode)
		}
		return d, err
	}

	var why string
	d.Checks, why = kvmChecks(p.KVM())
	if why != "" {
		if mode == AccelKVM {
			return d, fmt.Errorf("accel kvm: %s: use --accel auto or tcg", why)
		}
		return tcg(why)
	}
	if mode == AccelKVM {
		return kvm("kvm was asked for and /dev/kvm passes the checks (no boot probe: the boot watchdog catches a guest that does not run)")
	}
	if kernel == "" {
		return d, fmt.Errorf("%w: accel auto: no guest kernel to probe KVM with", api.ErrInvalid)
	}

	v, err := cachedProbe(ctx, &d, kernel, p)
	if err != nil {
		return d, err
	}
	detail := v.Reason
	if d.CacheHit {
		detail += " (cached)"
	}
	d.Checks = append(d.Checks, AccelCheck{Name: CheckBootProbe, OK: v.KVM, Detail: detail})
	if v.KVM {
		return kvm(detail)
	}
	return tcg(detail)
}

// cachedProbe returns the boot probe's verdict for kernel: from the cache
// when it holds one for this kernel, host boot and QEMU; otherwise it runs
// the probe and caches the verdict. A cache that cannot be used is noted
// in d and does not stop the decision.
func cachedProbe(ctx context.Context, d *AccelDecision, kernel string, p accelProbes) (probeVerdict, error) {
	key, keyErr := p.CacheKey(kernel)
	var cache accelCache
	if keyErr != nil {
		d.CacheNote = fmt.Sprintf("not cached: %v", keyErr)
	} else {
		var err error
		if cache, err = p.LoadCache(); err != nil {
			d.CacheNote = fmt.Sprintf("cache unreadable, probing again: %v", err)
			cache = accelCache{}
		} else if v, ok := cache.lookup(key); ok {
			d.CacheHit = true
			return v, nil
		}
	}

	probe := p.BootProbe(ctx, kernel)
	if err := ctx.Err(); err != nil {
		return probeVerdict{}, fmt.Errorf("accel auto: boot probe: %w", err)
	}
	d.Probe = &probe
	v := verdictOf(probe)
	if keyErr == nil {
		if err := p.SaveCache(cache.put(key, v)); err != nil {
			d.CacheNote = fmt.Sprintf("not cached: %v", err)
		}
	}
	return v, nil
}

// verdictOf turns a boot probe into the verdict that is cached.
func verdictOf(probe BootProbe) probeVerdict {
	v := probeVerdict{KVM: probe.OK, ProbeMS: probe.Took.Milliseconds(), ProbedAt: time.Now().UTC().Truncate(time.Second)}
	if probe.OK {
		v.Reason = fmt.Sprintf("the guest kernel printed its first line under kvm after %s (boot probe)", probe.Took.Round(time.Millisecond))
		return v
	}
	v.Reason = fmt.Sprintf("the guest kernel does not boot under kvm on this host (boot probe: %s)", probe.Why)
	if out := lastLine(probe.Output); out != "" {
		v.Reason += fmt.Sprintf("; last output %q", out)
	}
	return v
}

// kvmChecks judges the cheap checks: it returns them as checks, and the
// reason KVM cannot be used (the first failure), empty when all passed.
func kvmChecks(h KVMHost) ([]AccelCheck, string) {
	var checks []AccelCheck
	why := ""
	check := func(name string, ok bool, detail, reason string) {
		checks = append(checks, AccelCheck{Name: name, OK: ok, Detail: detail})
		if !ok && why == "" {
			why = reason
		}
	}
	switch {
	case errors.Is(h.OpenErr, fs.ErrNotExist):
		check(CheckDevKVM, false, "no /dev/kvm", "this host has no /dev/kvm")
	case h.OpenErr != nil:
		check(CheckDevKVM, false, h.OpenErr.Error(), fmt.Sprintf("/dev/kvm does not open read-write (%v)", h.OpenErr))
	default:
		check(CheckDevKVM, true, "", "")
		switch {
		case h.APIErr != nil:
			check(CheckAPIVersion, false, h.APIErr.Error(), fmt.Sprintf("KVM_GET_API_VERSION on /dev/kvm fails (%v)", h.APIErr))
		case h.APIVersion != kvmAPIVersion:
			check(CheckAPIVersion, false, fmt.Sprintf("version %d", h.APIVersion),
				fmt.Sprintf("/dev/kvm speaks KVM API version %d, not %d", h.APIVersion, kvmAPIVersion))
		default:
			check(CheckAPIVersion, true, "", "")
			if h.CreateVMErr != nil {
				check(CheckCreateVM, false, h.CreateVMErr.Error(), fmt.Sprintf("KVM_CREATE_VM on /dev/kvm fails (%v)", h.CreateVMErr))
			} else {
				check(CheckCreateVM, true, "", "")
			}
		}
	}
	loaded := strings.Join(h.Modules, ", ")
	switch {
	case slices.Contains(h.Modules, moduleIntel) || slices.Contains(h.Modules, moduleAMD):
		check(CheckHWModule, true, loaded, "")
	case slices.Contains(h.Modules, modulePVM):
		check(CheckHWModule, false, "only kvm_pvm is loaded",
			"/dev/kvm is served by kvm_pvm only, which cannot boot this kernel (PVM runs only kernels built as PVM guests)")
	default:
		detail := "no KVM module loaded"
		if loaded != "" {
			detail = "loaded: " + loaded
		}
		check(CheckHWModule, false, detail, "no hardware KVM module (kvm_intel or kvm_amd) is loaded")
	}
	return checks, why
}

// lastLine is the last non-empty line of s, trimmed.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}
