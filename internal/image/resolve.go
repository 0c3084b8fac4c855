package image

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/openslicer/openslicer/internal/imageref"
)

// Boot is everything a VM boots from, resolved from an image value.
type Boot struct {
	Name   string // the image value as configured
	Kernel string
	Initrd string
	// RootFS is the read-only ext4 base a VM's disk is cloned from.
	RootFS string
	// ID is the OCI image ID (config digest); "" for min.
	ID string
	// Config holds the image's exec defaults; nil for min.
	Config *ExecDefaults
	// KernelFrom says where Kernel came from: "min", "kernel_file" or
	// "kernel_image <ref>".
	KernelFrom string
}

// IsOCI reports whether the root file system is an OCI image (not min).
func (b *Boot) IsOCI() bool { return b.ID != "" }

// Resolver turns image values into Boot files. The rule for kernels: every
// image boots min's Debian kernel and initramfs (the agent as init, with
// the virtio modules of that kernel) unless the config names another
// kernel: kernel_file (a path, booted with min's initramfs) wins, then
// kernel_image (an OCI image with a kernel in /boot/vmlinuz-* or /vmlinuz;
// the newest version is taken). When that image also holds the kernel's
// modules (/lib/modules/<version>, uncompressed .ko files), the kernel gets
// an initramfs of its own with the agent and those virtio modules not built
// in; otherwise it runs with min's initramfs and needs its virtio drivers
// built in (as Slicer's and Firecracker's guest kernels have). An image's
// own /boot is used by naming the same image in kernel_image: it is never
// picked silently, so every image boots the tested kernel unless asked.
//
// OCI images are pulled on first use and remembered for the life of the
// Resolver, so VM creates do not contact the registry; `slicer image pull`
// refreshes the cache. When the registry cannot be reached, an image
// already in the cache under the same name is used (with a warning).
type Resolver struct {
	Min         *Builder
	OCI         *Store
	KernelFile  string
	KernelImage string
	Insecure    bool

	mu   sync.Mutex
	memo map[string]*Boot
}

// Resolve returns the boot files of an image value, pulling and building
// what is missing.
func (r *Resolver) Resolve(ctx context.Context, value string) (*Boot, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if b, ok := r.memo[value]; ok && b.stillThere() {
		return b, nil
	}
	src, err := imageref.Parse(value, r.Insecure)
	if err != nil {
		return nil, err
	}
	min, err := r.Min.Min(ctx)
	if err != nil {
		return nil, err
	}
	b := &Boot{Name: value, Kernel: min.Kernel, Initrd: min.Initrd, RootFS: min.RootFS, KernelFrom: "min"}
	if !src.IsBuiltin(imageref.Min) {
		img, err := r.pull(ctx, src)
		if err != nil {
			return nil, err
		}
		cfg := img.Config
		b.RootFS, b.ID, b.Config = img.RootFS, img.ID, &cfg
	}
	switch {
	case r.KernelFile != "":
		b.Kernel, b.KernelFrom = r.KernelFile, "kernel_file"
	case r.KernelImage != "":
		k, initrd, err := r.kernelFromImage(ctx)
		if err != nil {
			return nil, err
		}
		b.Kernel, b.KernelFrom = k, "kernel_image "+r.KernelImage
		if initrd != "" {
			b.Initrd = initrd
		}
	}
	if r.memo == nil {
		r.memo = map[string]*Boot{}
	}
	r.memo[value] = b
	return b, nil
}

// pull returns an OCI image: debian from the cache (it is built, not
// pulled), anything else pulled under its canonical name.
func (r *Resolver) pull(ctx context.Context, src imageref.Source) (*OCIImage, error) {
	if src.IsBuiltin(imageref.Debian) {
		img, err := r.OCI.Lookup(imageref.Debian)
		if errors.Is(err, errOldFormat) {
			// Built by another version: build its base again from the
			// layout slicer image build debian wrote.
			img, err = r.OCI.Pull(ctx, imageref.Debian, r.OCI.debianLayout())
		}
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("image debian is not built: run slicer image build debian (with the same --image-dir)")
		}
		return img, err
	}
	img, err := r.OCI.Pull(ctx, src.String(), src)
	if err != nil && src.Kind == imageref.Registry {
		// Offline, or the registry is down: a cached copy still boots.
		if cached, lerr := r.OCI.Lookup(src.String()); lerr == nil {
			r.OCI.logger().Warn("registry unreachable, using the cached image", "image", src.String(), "id", cached.ID, "err", err)
			return cached, nil
		}
	}
	return img, err
}

// kernelFromImage returns the kernel of the kernel_image and, when the
// image has that kernel's modules, an initramfs with them ("" otherwise:
// min's initramfs is used, so the kernel needs its virtio drivers built
// in).
func (r *Resolver) kernelFromImage(ctx context.Context) (kernel, initrd string, err error) {
	src, err := imageref.Parse(r.KernelImage, r.Insecure)
	if err != nil {
		return "", "", err
	}
	if src.Kind == imageref.Builtin {
		return "", "", fmt.Errorf("kernel_image %q: name an OCI image holding a kernel", r.KernelImage)
	}
	img, err := r.pull(ctx, src)
	if err != nil {
		return "", "", fmt.Errorf("kernel_image: %w", err)
	}
	files, err := extractBoot(ctx, img)
	if err != nil {
		return "", "", fmt.Errorf("kernel_image %s: %w", r.KernelImage, err)
	}
	if files.Modules == "" {
		return files.Kernel, "", nil
	}
	initrd, err = modulesInitrd(r.Min.AgentBinary, files.Modules)
	if err != nil {
		return "", "", fmt.Errorf("kernel_image %s: %w", r.KernelImage, err)
	}
	return files.Kernel, initrd, nil
}

// findKernel looks for /boot/vmlinuz-<version> (the newest) or /vmlinuz,
// /boot/vmlinuz in an ext4 image, reading it with debugfs; symlinks are
// not followed (debugfs would follow them inside the image only, but a
// kernel is a regular file).
func findKernel(ctx context.Context, rootfs string) (string, error) {
	var found []string
	for _, dir := range []string{"/boot", "/"} {
		ents, err := debugfsList(ctx, rootfs, dir)
		if err != nil {
			continue
		}
		for name, mode := range ents {
			if mode&0o170000 == 0o100000 && (name == "vmlinuz" || strings.HasPrefix(name, "vmlinuz-")) {
				found = append(found, filepath.Join(dir, name))
			}
		}
	}
	if len(found) == 0 {
		return "", errors.New("no kernel in /boot/vmlinuz-*, /boot/vmlinuz or /vmlinuz")
	}
	sort.Slice(found, func(i, j int) bool { return versionLess(found[j], found[i]) })
	return found[0], nil
}

// versionLess orders kernel file names by their dotted version numbers.
func versionLess(a, b string) bool {
	return compareVersions(filepath.Base(a), filepath.Base(b)) < 0
}

// debugfsList returns the names and modes in a directory of an ext4 image.
func debugfsList(ctx context.Context, rootfs, dir string) (map[string]uint32, error) {
	dbg, err := lookTool("debugfs", "e2fsprogs")
	if err != nil {
		return nil, err
	}
	q, err := debugfsName(dir)
	if err != nil {
		return nil, err
	}
	out, err := exec.CommandContext(ctx, dbg, "-R", "ls -p "+q, rootfs).Output()
	if err != nil {
		return nil, err
	}
	ents := map[string]uint32{}
	for _, l := range strings.Split(string(out), "\n") {
		// /ino/mode/uid/gid/name/size/
		f := strings.Split(l, "/")
		if len(f) < 7 || f[5] == "." || f[5] == ".." {
			continue
		}
		var mode uint32
		fmt.Sscanf(f[2], "%o", &mode)
		ents[f[5]] = mode
	}
	return ents, nil
}

// debugfsDump copies a file out of an ext4 image.
func debugfsDump(ctx context.Context, rootfs, path, out string) error {
	q, err := debugfsName(path)
	if err != nil {
		return err
	}
	qo, err := debugfsName(out)
	if err != nil {
		return err
	}
	return run(ctx, "debugfs", "e2fsprogs", "-R", "dump "+q+" "+qo, rootfs)
}

// stillThere reports whether the files of a remembered Boot still exist
// (an image may have been removed with slicer image remove).
func (b *Boot) stillThere() bool {
	for _, p := range []string{b.Kernel, b.Initrd, b.RootFS} {
		if _, err := os.Stat(p); err != nil {
			return false
		}
	}
	return true
}

// compareVersions compares strings such as "vmlinuz-6.1.0-9-amd64" and
// "vmlinuz-6.1.0-10-amd64" by their runs of digits as numbers and their
// other characters as text.
func compareVersions(a, b string) int {
	for a != "" && b != "" {
		da, ra := leadingRun(a)
		db, rb := leadingRun(b)
		if isDigit(da[0]) && isDigit(db[0]) {
			na, nb := strings.TrimLeft(da, "0"), strings.TrimLeft(db, "0")
			if len(na) != len(nb) {
				return len(na) - len(nb)
			}
			if c := strings.Compare(na, nb); c != 0 {
				return c
			}
		} else if c := strings.Compare(da, db); c != 0 {
			return c
		}
		a, b = ra, rb
	}
	return len(a) - len(b)
}

// leadingRun splits s after its first run of digits or of non-digits.
func leadingRun(s string) (run, rest string) {
	d := isDigit(s[0])
	i := 1
	for i < len(s) && isDigit(s[i]) == d {
		i++
	}
	return s[:i], s[i:]
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// bootFiles are a kernel image's kernel and, when it has them, its
// modules, extracted once into <image dir>/boot.
type bootFiles struct {
	Kernel  string
	Modules string // lib/modules/<version> tree; "" when the image has none
}

// extractBoot copies the kernel of an image's ext4 base, and the module
// tree of the same version (/lib/modules/V or /usr/lib/modules/V) when
// there is one, into dir/boot.
func extractBoot(ctx context.Context, img *OCIImage) (bootFiles, error) {
	out := filepath.Join(img.Dir, "boot")
	files := bootFiles{Kernel: filepath.Join(out, "vmlinuz"), Modules: filepath.Join(out, "modules")}
	if _, err := os.Stat(files.Kernel); err != nil {
		k, err := findKernel(ctx, img.RootFS)
		if err != nil {
			return bootFiles{}, err
		}
		tmp, err := os.MkdirTemp(img.Dir, ".boot-")
		if err != nil {
			return bootFiles{}, err
		}
		defer os.RemoveAll(tmp)
		if err := debugfsDump(ctx, img.RootFS, k, filepath.Join(tmp, "vmlinuz")); err != nil {
			return bootFiles{}, err
		}
		version := strings.TrimPrefix(filepath.Base(k), "vmlinuz-")
		for _, dir := range []string{"/lib/modules/" + version, "/usr/lib/modules/" + version} {
			if version == "vmlinuz" {
				break // /vmlinuz names no version
			}
			if ents, err := debugfsList(ctx, img.RootFS, dir); err != nil || len(ents) == 0 {
				continue
			}
			if err := debugfsRdump(ctx, img.RootFS, dir, tmp); err != nil {
				return bootFiles{}, err
			}
			if err := os.Rename(filepath.Join(tmp, version), filepath.Join(tmp, "modules")); err != nil {
				return bootFiles{}, err
			}
			break
		}
		if err := os.Rename(tmp, out); err != nil {
			return bootFiles{}, err
		}
	}
	if _, err := os.Stat(files.Modules); err != nil {
		files.Modules = ""
	}
	return files, nil
}

// modulesInitrd returns an initramfs with the agent as init and the
// virtio modules of a kernel's module tree (those not built in), cached
// per agent binary next to the tree.
func modulesInitrd(agent, modDir string) (string, error) {
	sum, err := sha256File(agent)
	if err != nil {
		return "", fmt.Errorf("agent binary: %w", err)
	}
	out := filepath.Join(filepath.Dir(modDir), "initrd-"+sum[:16])
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	builtin := builtinModules(modDir)
	var want []string
	for _, m := range initramfsModules {
		if !builtin[m] {
			want = append(want, m)
		}
	}
	mods, err := resolveModules(modDir, want)
	if err != nil {
		return "", err
	}
	tmp := out + ".tmp"
	os.Remove(tmp)
	if err := writeInitramfs(tmp, initramfsEntries(agent, mods)); err != nil {
		return "", err
	}
	return out, os.Rename(tmp, out)
}

// debugfsRdump copies a directory tree out of an ext4 image into dir.
func debugfsRdump(ctx context.Context, rootfs, path, dir string) error {
	q, err := debugfsName(path)
	if err != nil {
		return err
	}
	qd, err := debugfsName(dir)
	if err != nil {
		return err
	}
	return run(ctx, "debugfs", "e2fsprogs", "-R", "rdump "+q+" "+qd, rootfs)
}
