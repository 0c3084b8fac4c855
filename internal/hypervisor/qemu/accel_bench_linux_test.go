package qemu

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// probeProcesses lists the pids of boot-probe QEMUs still running (not
// zombies: those have an empty command line).
func probeProcesses() []string {
	var out []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(cmdline), "-name\x00"+probeName+"\x00") {
			out = append(out, e.Name())
		}
	}
	return out
}

// The real boot probe, under TCG since KVM may not work here: QEMU with
// probeArgs and the test kernel prints the kernel banner, and the probe
// leaves no QEMU behind. (Under KVM the same command is the real probe.)
func TestBootProbeRealQEMU(t *testing.T) {
	requireQEMU(t)
	kernel := testKernel(t)
	got := runBootProbe(context.Background(), New(nil).Binary, kernel, Accel{}, time.Minute)
	if !got.OK || !strings.Contains(got.Line, "Linux version") {
		t.Fatalf("boot probe under TCG = %+v, want the kernel banner", got)
	}
	if left := probeProcesses(); len(left) > 0 {
		t.Errorf("probe processes left: %v", left)
	}
}

// BenchmarkKVMCheapChecks measures the cheap checks on this host: what
// auto costs on a host that fails them, besides the TSC measurement.
func BenchmarkKVMCheapChecks(b *testing.B) {
	for b.Loop() {
		kvmHost("/dev/kvm", "/sys/module")
	}
}

// BenchmarkAccelCacheKeyCold measures computing the cache key of the test
// kernel from scratch (SHA-256 of the kernel, the boot id, qemu
// --version): what a first start pays on a host that passes the cheap
// checks, besides the probe.
func BenchmarkAccelCacheKeyCold(b *testing.B) {
	requireQEMU(b)
	kernel := testKernel(b)
	p := New(nil).probes().(hostProbes)
	for b.Loop() {
		p.cacheFile = filepath.Join(b.TempDir(), AccelCacheFile)
		if _, err := p.CacheKey(kernel); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAccelCacheKeyWarm is the same with the digest and version
// remembered: what a later start pays before the cache answers.
func BenchmarkAccelCacheKeyWarm(b *testing.B) {
	requireQEMU(b)
	kernel := testKernel(b)
	p := New(nil).probes().(hostProbes)
	p.cacheFile = filepath.Join(b.TempDir(), AccelCacheFile)
	for b.Loop() {
		if _, err := p.CacheKey(kernel); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBootProbeTCG measures the boot probe's command under TCG, from
// starting QEMU to the kernel banner: an upper bound for what the probe
// costs under KVM at a first start. Run it under flock /tmp/slicer-vm.lock.
func BenchmarkBootProbeTCG(b *testing.B) {
	requireQEMU(b)
	kernel := testKernel(b)
	bin := New(nil).Binary
	var total time.Duration
	for b.Loop() {
		got := runBootProbe(context.Background(), bin, kernel, Accel{}, time.Minute)
		if !got.OK {
			b.Fatalf("probe failed: %+v", got)
		}
		total += got.Took
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms-to-banner/op")
}
