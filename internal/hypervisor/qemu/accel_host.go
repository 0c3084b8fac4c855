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
	"slices"
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

// CacheKey hashes the kernel and asks QEMU its version, unless the cache
// file remembers both for the files as they are (see fileMemo): hashing
// a 14 MB kernel and starting QEMU cost about 0.1 s each on the 2-vCPU
// build host, which a start that the cache answers should not pay.
func (h hostProbes) CacheKey(kernel string) (accelCacheKey, error) {
	if h.cacheFile == "" {
		return accelCacheKey{}, errors.New("no cache directory")
	}
	boot, err := os.ReadFile(h.bootID)
	if err != nil {
		return accelCacheKey{}, fmt.Errorf("host boot id: %w", err)
	}
	c, _ := readAccelCache(h.cacheFile) // unreadable: compute everything
	binary := h.binary
	if p, err := exec.LookPath(binary); err == nil {
		binary = p
	}
	sum, sumNew, err := memoized(c.Files, kernel, fileSHA256)
	if err != nil {
		return accelCacheKey{}, err
	}
	version, versionNew, err := memoized(c.Files, binary, qemuVersion)
	if err != nil {
		return accelCacheKey{}, err
	}
	if sumNew != nil || versionNew != nil {
		c.Files = remember(c.Files, sumNew, versionNew)
		writeAccelCache(h.cacheFile, c) // best effort: it only saves time
	}
	return accelCacheKey{KernelSHA256: sum, BootID: strings.TrimSpace(string(boot)), QEMUVersion: version}, nil
}

// memoized returns compute(path), from memos when one holds the file as
// it is now; otherwise it computes it and returns the memo to keep (nil
// when the file's identity is unknown).
func memoized(memos []fileMemo, path string, compute func(string) (string, error)) (string, *fileMemo, error) {
	id, idOK := identify(path)
	if idOK {
		for _, m := range memos {
			if m.fileID == id {
				return m.Value, nil, nil
			}
		}
	}
	v, err := compute(path)
	if err != nil || !idOK {
		return v, nil, err
	}
	return v, &fileMemo{fileID: id, Value: v}, nil
}

// maxFileMemos bounds the memos kept (a few kernels and one QEMU).
const maxFileMemos = 8

// remember adds the new memos, each replacing any of the same path, and
// keeps the newest maxFileMemos.
func remember(memos []fileMemo, add ...*fileMemo) []fileMemo {
	for _, m := range add {
		if m == nil {
			continue
		}
		memos = slices.DeleteFunc(slices.Clone(memos), func(o fileMemo) bool { return o.Path == m.Path })
		memos = append(memos, *m)
	}
	return memos[max(0, len(memos)-maxFileMemos):]
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
