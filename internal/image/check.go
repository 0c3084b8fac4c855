package image

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// These checks answer, before a build, whether this host has what building
// the min image takes (slicer doctor runs them). Each returns an error
// whose message names the fix.

// CheckBusybox reports whether the static busybox the min image's root
// filesystem is made of is installed (Debian's busybox-static).
func CheckBusybox() error {
	return requireStatic(busyboxPath, "busybox", "install it with apt-get install busybox-static")
}

// CheckMkfs makes a small ext4 file from a directory with mkfs.ext4 -d, as
// the min image build does, in a temporary directory under tmp that it
// removes. It returns the mkfs.ext4 path.
func CheckMkfs(ctx context.Context, tmp string) (string, error) {
	mkfs, err := lookTool("mkfs.ext4", "e2fsprogs")
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp(tmp, "slicer-mkfs-check-")
	if err != nil {
		return mkfs, err
	}
	defer os.RemoveAll(dir)
	staging := filepath.Join(dir, "root")
	if err := os.Mkdir(staging, 0o755); err != nil {
		return mkfs, err
	}
	if err := os.WriteFile(filepath.Join(staging, "probe"), []byte("ok\n"), 0o644); err != nil {
		return mkfs, err
	}
	out, err := exec.CommandContext(ctx, mkfs, "-q", "-F", "-d", staging, filepath.Join(dir, "fs.ext4"), "4M").CombinedOutput()
	if err != nil {
		return mkfs, fmt.Errorf("%s -d failed: %w: %s (install e2fsprogs 1.43 or newer: apt-get install e2fsprogs)",
			mkfs, err, strings.TrimSpace(string(out)))
	}
	return mkfs, nil
}

// KernelMetapackage is the Debian package whose dependency names the
// kernel the min image is built from (linux-image-cloud-amd64 here).
func KernelMetapackage() string { return kernelMetapackage() }

// KernelPackage asks apt, from its local package lists only, which kernel
// package a build would download now.
func KernelPackage(ctx context.Context) (string, error) {
	return resolveKernelPackage(ctx)
}

// CachedKernel returns the kernel package cached in the image directory
// dir (Builder.Dir), or "" when there is none; with one, a build asks apt
// nothing.
func CachedKernel(dir string) (string, error) {
	return cachedDeb(filepath.Join(dir, "debs"), "linux-image-*-"+kernelFlavour()+"_*.deb")
}
