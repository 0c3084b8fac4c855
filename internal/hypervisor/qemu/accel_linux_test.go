package qemu

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The real cheap checks on a /dev/kvm that is missing, and on one that is
// not a KVM device (a regular file: open works, the ioctl does not).
func TestKVMHostChecks(t *testing.T) {
	dir := t.TempDir()
	h := kvmHost(filepath.Join(dir, "kvm"), dir)
	if !errors.Is(h.OpenErr, fs.ErrNotExist) {
		t.Errorf("missing device: OpenErr = %v, want not exist", h.OpenErr)
	}
	notKVM := filepath.Join(dir, "file")
	if err := os.WriteFile(notKVM, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	h = kvmHost(notKVM, dir)
	if h.OpenErr != nil || h.APIErr == nil {
		t.Errorf("a regular file: %+v, want it to open and fail KVM_GET_API_VERSION", h)
	}
	if _, why := kvmChecks(h); !strings.Contains(why, "KVM_GET_API_VERSION") {
		t.Errorf("reason %q does not name the failing ioctl", why)
	}
}

// fakeQEMU writes a shell script that stands in for qemu-system-x86_64
// in a boot probe: it records its pid, then runs body.
func fakeQEMU(t *testing.T, body string) (binary, pidFile string) {
	t.Helper()
	dir := t.TempDir()
	binary, pidFile = filepath.Join(dir, "qemu"), filepath.Join(dir, "pid")
	script := "#!/bin/sh\necho $$ > " + pidFile + "\n" + body + "\n"
	if err := os.WriteFile(binary, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return binary, pidFile
}

// assertGone checks that the fake's process no longer exists.
func assertGone(t *testing.T, pidFile string) {
	t.Helper()
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatalf("the fake qemu did not run: %v", err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("probe process %d still exists after the probe (kill 0: %v)", pid, err)
	}
}

// The boot probe, run against stand-ins for QEMU: it waits for the kernel
// banner, not for the real-mode stub's output, and leaves no process.
func TestRunBootProbe(t *testing.T) {
	tests := []struct {
		name     string
		body     string
		timeout  time.Duration
		wantOK   bool
		wantWhy  string
		wantOut  string
		wantLine string
	}{
		{
			name:    "kernel prints its banner",
			body:    `printf 'Probing EDD (edd=off to disable)... ok\r\n[    0.000000] Linux version 6.1.0-57-cloud-amd64\r\n'; exec sleep 60`,
			timeout: time.Minute, wantOK: true, wantLine: "[    0.000000] Linux version 6.1.0-57-cloud-amd64",
		},
		{
			name: "PVM: the stub prints, the kernel hangs",
			body: `printf 'Probing EDD (edd=off to disable)... ok\r\n'; exec sleep 60`,
			// Long enough for the shell to start and print on a loaded
			// host: the probe must time out after the stub's line.
			timeout: 3 * time.Second, wantWhy: "no kernel line within 3s", wantOut: "Probing EDD (edd=off to disable)... ok",
		},
		{
			name:    "qemu fails to start",
			body:    `echo 'qemu-system-x86_64: failed to initialize kvm: Permission denied' >&2; exit 1`,
			timeout: time.Minute, wantWhy: "qemu exited (exit status 1) before the kernel printed",
			wantOut: "qemu-system-x86_64: failed to initialize kvm: Permission denied",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bin, pidFile := fakeQEMU(t, tt.body)
			got := runBootProbe(context.Background(), bin, "/k/vmlinuz", Accel{KVM: true}, tt.timeout)
			if got.OK != tt.wantOK || got.Why != tt.wantWhy || got.Output != tt.wantOut || got.Line != tt.wantLine {
				t.Errorf("runBootProbe = %+v\nwant OK %v, Why %q, Output %q, Line %q", got, tt.wantOK, tt.wantWhy, tt.wantOut, tt.wantLine)
			}
			if got.Took <= 0 {
				t.Errorf("Took = %v, want the probe's duration", got.Took)
			}
			assertGone(t, pidFile)
		})
	}
}

// A probe whose context ends is killed at once.
func TestRunBootProbeCancelled(t *testing.T) {
	bin, pidFile := fakeQEMU(t, "exec sleep 60")
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for {
			if _, err := os.Stat(pidFile); err == nil {
				cancel()
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	got := runBootProbe(ctx, bin, "/k/vmlinuz", Accel{KVM: true}, time.Hour)
	if got.OK || !strings.Contains(got.Why, "canceled") {
		t.Errorf("cancelled probe = %+v, want a failure naming the cancellation", got)
	}
	assertGone(t, pidFile)
}

// The real cache key: the kernel's digest, the boot id and QEMU's version,
// computed once per file as it is (remembered in the cache file), and again
// when the kernel or QEMU changes: a QEMU upgrade gives another key, so the
// cached verdict no longer matches.
func TestHostCacheKey(t *testing.T) {
	dir := t.TempDir()
	kernel, bootID, calls := filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "boot_id"), filepath.Join(dir, "calls")
	writeFile(t, kernel, "kernel one")
	writeFile(t, bootID, "boot-1\n")
	qemu := filepath.Join(dir, "qemu")
	writeQEMU := func(version string) {
		// Written to a new file and renamed over, as a package upgrade does.
		tmp := qemu + ".new"
		script := "#!/bin/sh\necho x >> " + calls + "\necho 'QEMU emulator version " + version + "'\necho 'Copyright'\n"
		if err := os.WriteFile(tmp, []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, qemu); err != nil {
			t.Fatal(err)
		}
	}
	versionRuns := func() int {
		b, _ := os.ReadFile(calls)
		return strings.Count(string(b), "x")
	}
	writeQEMU("7.2.22")
	p := hostProbes{binary: qemu, cacheFile: filepath.Join(dir, AccelCacheFile), bootID: bootID}

	key, err := p.CacheKey(kernel)
	if err != nil {
		t.Fatal(err)
	}
	want := accelCacheKey{
		KernelSHA256: fmt.Sprintf("%x", sha256.Sum256([]byte("kernel one"))),
		BootID:       "boot-1", QEMUVersion: "QEMU emulator version 7.2.22",
	}
	if key != want {
		t.Fatalf("CacheKey = %+v, want %+v", key, want)
	}
	if again, err := p.CacheKey(kernel); err != nil || again != key || versionRuns() != 1 {
		t.Errorf("second CacheKey = %+v, %v after %d qemu runs; want the same key from the memo, qemu run once", again, err, versionRuns())
	}

	writeQEMU("8.2.0")
	upgraded, err := p.CacheKey(kernel)
	if err != nil || upgraded.QEMUVersion != "QEMU emulator version 8.2.0" || versionRuns() != 2 {
		t.Errorf("CacheKey after a QEMU upgrade = %+v, %v (%d qemu runs); want the new version", upgraded, err, versionRuns())
	}
	if c, _ := readAccelCache(p.cacheFile); func() bool { _, ok := c.lookup(key); return ok }() {
		t.Errorf("stale key still matches")
	}

	writeFile(t, kernel+".new", "kernel two")
	if err := os.Rename(kernel+".new", kernel); err != nil {
		t.Fatal(err)
	}
	if newKernel, err := p.CacheKey(kernel); err != nil || newKernel.KernelSHA256 == key.KernelSHA256 {
		t.Errorf("CacheKey after replacing the kernel = %+v, %v; want another digest", newKernel, err)
	}
	c, err := readAccelCache(p.cacheFile)
	if err != nil || len(c.Files) != 2 {
		t.Errorf("cache memos = %+v, %v; want one for the kernel and one for qemu", c.Files, err)
	}
}
