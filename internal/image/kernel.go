package image

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

// kernelMetapackage is the Debian package that always depends on the current
// cloud kernel: linux-image-cloud-amd64 depends on linux-image-<abi>-cloud-amd64,
// which holds the files.
func kernelMetapackage() string {
	return "linux-image-" + kernelFlavour()
}

// kernelFlavour is the suffix of Debian's cloud kernel packages for this
// architecture (Debian's names for amd64 and arm64 match Go's).
func kernelFlavour() string {
	return "cloud-" + runtime.GOARCH
}

// parseKernelDepends finds the kernel package in `apt-cache depends
// <metapackage>` output.
func parseKernelDepends(out []byte) (string, error) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && strings.TrimPrefix(f[0], "|") == "Depends:" && strings.HasPrefix(f[1], "linux-image-") {
			return f[1], nil
		}
	}
	return "", errors.New("no linux-image-* dependency in apt-cache output")
}

// resolveKernelPackage asks apt which package the cloud kernel metapackage
// currently depends on. apt-cache reads the local package lists only.
func resolveKernelPackage(ctx context.Context) (string, error) {
	meta := kernelMetapackage()
	out, err := exec.CommandContext(ctx, "apt-cache", "depends", meta).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("apt-cache depends %s: %w: %s (run apt-get update; this needs Debian's package lists)",
			meta, err, strings.TrimSpace(string(out)))
	}
	pkg, err := parseKernelDepends(out)
	if err != nil {
		return "", fmt.Errorf("apt-cache depends %s: %w", meta, err)
	}
	return pkg, nil
}

// cachedDeb returns the newest .deb in dir whose file name matches glob, or
// "" when there is none.
func cachedDeb(dir, glob string) (string, error) {
	matches, err := filepath.Glob(filepath.Join(dir, glob))
	if err != nil {
		return "", err
	}
	var best string
	var bestTime int64
	for _, m := range matches {
		st, err := os.Stat(m)
		if err != nil || !st.Mode().IsRegular() {
			continue
		}
		if t := st.ModTime().UnixNano(); best == "" || t > bestTime {
			best, bestTime = m, t
		}
	}
	return best, nil
}

// downloadDeb fetches pkg with `apt-get download` into a temporary
// directory under dir and moves the .deb into dir, so an interrupted
// download never leaves a file that looks cached.
func downloadDeb(ctx context.Context, dir, pkg string) (string, error) {
	tmp, err := os.MkdirTemp(dir, ".download-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	// apt drops privileges to _apt for downloads when it can; a directory
	// _apt may enter avoids its "unsandboxed" warning in the common case.
	_ = os.Chmod(tmp, 0o755)
	cmd := exec.CommandContext(ctx, "apt-get", "download", "-q", pkg)
	cmd.Dir = tmp
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("apt-get download %s: %w: %s (check network access to the Debian mirror, or run apt-get update)",
			pkg, err, strings.TrimSpace(string(out)))
	}
	debs, err := filepath.Glob(filepath.Join(tmp, pkg+"_*.deb"))
	if err != nil || len(debs) != 1 {
		return "", fmt.Errorf("apt-get download %s: expected one .deb, found %d", pkg, len(debs))
	}
	dst := filepath.Join(dir, filepath.Base(debs[0]))
	if err := os.Rename(debs[0], dst); err != nil {
		return "", err
	}
	return dst, nil
}

// extractedKernel is what the image needs from a kernel package.
type extractedKernel struct {
	Version string // e.g. 6.1.0-56-cloud-amd64
	Vmlinuz string
	Modules string // lib/modules/<version>
}

// extractKernel unpacks deb into dir and finds the kernel and its modules.
func extractKernel(ctx context.Context, deb, dir string) (extractedKernel, error) {
	if out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", deb, dir).CombinedOutput(); err != nil {
		return extractedKernel{}, fmt.Errorf("dpkg-deb -x %s: %w: %s", deb, err, strings.TrimSpace(string(out)))
	}
	kernels, err := filepath.Glob(filepath.Join(dir, "boot", "vmlinuz-*"))
	if err != nil || len(kernels) != 1 {
		return extractedKernel{}, fmt.Errorf("kernel package %s: expected one boot/vmlinuz-*, found %d", deb, len(kernels))
	}
	k := extractedKernel{Vmlinuz: kernels[0]}
	k.Version = strings.TrimPrefix(filepath.Base(k.Vmlinuz), "vmlinuz-")
	k.Modules = filepath.Join(dir, "lib", "modules", k.Version)
	if _, err := os.Stat(k.Modules); err != nil {
		return extractedKernel{}, fmt.Errorf("kernel package %s: modules for %s: %w", deb, k.Version, err)
	}
	return k, nil
}
