package qemu

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// AccelCacheFile is the name of the boot-probe cache in Backend.CacheDir.
const AccelCacheFile = "accel-cache.json"

// DefaultProbeTimeout bounds the boot probe. Under KVM the kernel prints
// its banner a few hundred milliseconds after QEMU starts; under TCG on a
// 2-vCPU host the same line takes about 0.5 s (docs/accelerator.md).
const DefaultProbeTimeout = 5 * time.Second

// probeMarker is the first line the kernel itself prints (its banner), as
// opposed to the real-mode setup code's "Probing EDD", which a PVM host
// prints before hanging.
const probeMarker = "Linux version "

// probeCmdline asks the kernel to print at once (earlyprintk) on the one
// serial port, and to reboot (which ends QEMU, -no-reboot) if it panics
// for want of a root file system.
const probeCmdline = "console=ttyS0 earlyprintk=serial,ttyS0,115200 8250.nr_uarts=1 panic=-1 reboot=t"

// probeName is the -name of a boot probe's QEMU, so it can be told apart.
const probeName = "slicer-accel-probe"

// probeArgs boots kernel with no disks, initrd or devices but the serial
// console, which QEMU writes to its stdout.
func probeArgs(kernel string, accel Accel) []string {
	args := []string{"-name", probeName, "-M", "microvm,acpi=on"}
	if accel.KVM {
		args = append(args, "-accel", "kvm", "-cpu", "host")
	} else {
		args = append(args, "-accel", "tcg", "-cpu", "max")
	}
	return append(args,
		"-m", "128", "-smp", "1",
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-kernel", kernel, "-append", probeCmdline,
		"-serial", "stdio",
	)
}

// hostProbes are the real accelProbes.
type hostProbes struct {
	binary    string
	cacheFile string // empty: no cache
	timeout   time.Duration
	modules   string // /sys/module
	bootID    string // /proc/sys/kernel/random/boot_id
}

func (h hostProbes) KVM() KVMHost { return kvmHost("/dev/kvm", h.modules) }

func (h hostProbes) TSCkHz() int64 { return measureTSCkHz() }

func (h hostProbes) BootProbe(ctx context.Context, kernel string) BootProbe {
	return runBootProbe(ctx, h.binary, kernel, Accel{KVM: true}, h.timeout)
}

func (h hostProbes) CacheKey(kernel string) (accelCacheKey, error) {
	if h.cacheFile == "" {
		return accelCacheKey{}, errors.New("no cache directory")
	}
	sum, err := fileSHA256(kernel)
	if err != nil {
		return accelCacheKey{}, err
	}
	boot, err := os.ReadFile(h.bootID)
	if err != nil {
		return accelCacheKey{}, fmt.Errorf("host boot id: %w", err)
	}
	version, err := qemuVersion(h.binary)
	if err != nil {
		return accelCacheKey{}, err
	}
	return accelCacheKey{KernelSHA256: sum, BootID: strings.TrimSpace(string(boot)), QEMUVersion: version}, nil
}

func (h hostProbes) LoadCache() (accelCache, error) {
	return readAccelCache(h.cacheFile)
}

func (h hostProbes) SaveCache(c accelCache) error {
	return writeAccelCache(h.cacheFile, c)
}

// readAccelCache reads the cache file; a missing one is an empty cache.
func readAccelCache(path string) (accelCache, error) {
	var c accelCache
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return c, err
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return accelCache{}, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// writeAccelCache replaces the cache file atomically (several daemons may
// share an image directory: the last writer wins, and a lost entry only
// costs one more probe).
func writeAccelCache(path string, c accelCache) error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".accel-cache-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// fileSHA256 is the hex SHA-256 of a file's content.
func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("guest kernel: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("guest kernel: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// qemuVersion is the first line of `qemu-system-x86_64 --version`, e.g.
// "QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)".
func qemuVersion(binary string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, binary, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("%s --version: %w", binary, err)
	}
	line, _, _ := bytes.Cut(out, []byte("\n"))
	return strings.TrimSpace(string(line)), nil
}

// kvmModules returns the KVM modules loaded, as found in dir
// (/sys/module): a module built into the kernel shows there too when it
// has parameters, as these do.
func kvmModules(dir string) []string {
	var out []string
	for _, m := range []string{moduleIntel, moduleAMD, modulePVM} {
		if _, err := os.Stat(filepath.Join(dir, m)); err == nil {
			out = append(out, m)
		}
	}
	return out
}
