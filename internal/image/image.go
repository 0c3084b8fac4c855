// Package image provides the guest images VMs boot from and the per-VM copy
// of an image's root disk.
//
// The built-in image is "min", made from Debian packages only: the Debian
// cloud kernel (apt-get download, dpkg-deb -x), an initramfs whose /init is
// slicer-agent and which carries the virtio modules the kernel needs, and an
// ext4 root filesystem with busybox and bash (mkfs.ext4 -d), whose uid-1000
// user is "ubuntu" (home /home/ubuntu), the name Slicer's images and the
// programs written against them use. It is built once per
// digest of its inputs and cached under Builder.Dir:
//
//	<Dir>/
//	  .lock                  flock held while checking or building
//	  debs/<pkg>_<ver>.deb   the kernel package; once cached, apt is not asked again
//	  min-<digest[:16]>/     one finished image; appears by rename, complete
//	    vmlinuz initrd rootfs.ext4 image.json
//	    grow-<bytes>.qcow2, users/   copy-on-write disks made from it (see Cloner)
//	  .build-min-*/          a build in progress (removed when stale)
//
// Images built from older inputs are left in place: nothing removes them
// yet, and VM disks never reference them (each VM has its own clone).
package image

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// formatVersion changes whenever the builder would produce a different
// image from the same inputs, so old cached images are not reused.
const formatVersion = 2

// Builder builds and caches the built-in images. Its zero value is not
// usable: Dir and AgentBinary are required. Methods are safe for
// concurrent use; separate processes sharing Dir serialise on a file lock.
type Builder struct {
	Dir         string // cache root; everything is written under it
	AgentBinary string // static slicer-agent binary put into images
	Log         *slog.Logger
	Progress    io.Writer // human progress lines; may be nil

	mu   sync.Mutex
	memo *memo
}

// Image is a built image. Paths are absolute.
type Image struct {
	Name          string
	Digest        string // "sha256:<hex>" over the image's inputs
	Kernel        string
	Initrd        string
	RootFS        string
	KernelVersion string
}

// manifest is image.json, written last inside a build.
type manifest struct {
	Name          string       `json:"name"`
	Digest        string       `json:"digest"`
	KernelVersion string       `json:"kernel_version"`
	Inputs        digestInputs `json:"inputs"`
	Modules       []string     `json:"modules"`
	Built         time.Time    `json:"built"`
}

// memo remembers the last image so that resolving it again (once per VM
// create) costs two stats instead of taking the lock and hashing the
// inputs. It is keyed by the size and mtime of the agent and busybox; the
// kernel package only changes when someone empties <Dir>/debs, which a new
// Builder (daemon restart) notices.
type memo struct {
	dir, agentPath string
	agent, busybox fileKey
	img            Image
}

type fileKey struct {
	size  int64
	mtime time.Time
}

// busyboxPath is the static busybox from Debian's busybox-static package.
const busyboxPath = "/bin/busybox"

// bashPath is the static bash from Debian's bash-static package; the image
// has it as /bin/bash, the shell programs written against Slicer expect.
const bashPath = "/bin/bash-static"

// Min returns the built-in min image, building it first if its inputs
// changed since it was last built (or it never was).
func (b *Builder) Min(ctx context.Context) (*Image, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.Dir == "" || b.AgentBinary == "" {
		return nil, errors.New("image min: Builder needs Dir and AgentBinary")
	}
	if img, ok := b.memoHit(); ok {
		return img, nil
	}
	dir, err := filepath.Abs(b.Dir)
	if err != nil {
		return nil, fmt.Errorf("image min: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "debs"), 0o755); err != nil {
		return nil, fmt.Errorf("image min: create cache dir: %w", err)
	}
	unlock, err := lockDir(ctx, filepath.Join(dir, ".lock"), func() {
		b.progress("image min: waiting for another process building in %s", dir)
	})
	if err != nil {
		return nil, fmt.Errorf("image min: lock %s: %w", dir, err)
	}
	defer unlock()
	removeStale(dir, b.logger())

	img, err := b.min(ctx, dir)
	if err != nil {
		return nil, fmt.Errorf("image min: %w", err)
	}
	b.remember(*img)
	return img, nil
}

// min finds the inputs, then returns the cached image for them or builds it.
func (b *Builder) min(ctx context.Context, dir string) (*Image, error) {
	if err := requireStatic(b.AgentBinary, "slicer-agent", "build it with CGO_ENABLED=0"); err != nil {
		return nil, err
	}
	if err := requireStatic(busyboxPath, "busybox", "install it with apt-get install busybox-static"); err != nil {
		return nil, err
	}
	if err := requireStatic(bashPath, "bash", "install it with apt-get install bash-static"); err != nil {
		return nil, err
	}
	deb, err := b.kernelDeb(ctx, filepath.Join(dir, "debs"))
	if err != nil {
		return nil, err
	}
	in, err := readInputs(deb, b.AgentBinary, busyboxPath, bashPath)
	if err != nil {
		return nil, err
	}
	digest := in.digest()
	imgDir := filepath.Join(dir, "min-"+digest[:16])
	img, err := loadImage(imgDir)
	if err == nil {
		b.logger().Debug("image min cached", "digest", img.Digest, "dir", imgDir)
		return img, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w (remove %s to rebuild it)", err, imgDir)
	}
	start := time.Now()
	if err := b.build(ctx, dir, imgDir, deb, in); err != nil {
		return nil, err
	}
	img, err = loadImage(imgDir)
	if err != nil {
		return nil, err
	}
	b.progress("image min: %s built in %s", img.Digest, since(start))
	b.logger().Info("built image", "name", "min", "digest", img.Digest, "kernel", img.KernelVersion, "dir", imgDir)
	return img, nil
}

// kernelDeb returns the cached kernel package or downloads the one apt
// names as current. A cached package is used without asking apt at all, so
// a machine with a cache needs neither network nor package lists; to move
// to a newer kernel, delete <Dir>/debs.
func (b *Builder) kernelDeb(ctx context.Context, debs string) (string, error) {
	deb, err := cachedDeb(debs, "linux-image-*-"+kernelFlavour()+"_*.deb")
	if err != nil || deb != "" {
		return deb, err
	}
	pkg, err := resolveKernelPackage(ctx)
	if err != nil {
		return "", err
	}
	b.progress("image min: downloading kernel %s ...", pkg)
	start := time.Now()
	if deb, err = downloadDeb(ctx, debs, pkg); err != nil {
		return "", err
	}
	b.progress("image min: downloaded %s (%s) in %s", filepath.Base(deb), sizeOf(deb), since(start))
	return deb, nil
}

// build makes the image in a temporary directory under dir and renames it
// to imgDir once every file, image.json last, is written and synced.
func (b *Builder) build(ctx context.Context, dir, imgDir, deb string, in digestInputs) error {
	tmp, err := os.MkdirTemp(dir, ".build-min-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	out, work := filepath.Join(tmp, "image"), filepath.Join(tmp, "work")
	for _, d := range []string{out, work} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return err
		}
	}

	start := time.Now()
	k, err := extractKernel(ctx, deb, filepath.Join(work, "kernel"))
	if err != nil {
		return err
	}
	if err := os.Rename(k.Vmlinuz, filepath.Join(out, "vmlinuz")); err != nil {
		return err
	}
	b.progress("image min: extracted kernel %s in %s", k.Version, since(start))

	start = time.Now()
	mods, err := resolveModules(k.Modules, initramfsModules)
	if err != nil {
		return err
	}
	if err := writeInitramfs(filepath.Join(out, "initrd"), initramfsEntries(b.AgentBinary, mods)); err != nil {
		return err
	}
	b.progress("image min: initramfs with %d modules (%s) in %s", len(mods), sizeOf(filepath.Join(out, "initrd")), since(start))

	start = time.Now()
	applets, err := busyboxApplets(ctx, busyboxPath)
	if err != nil {
		return err
	}
	es := rootfsEntries(b.AgentBinary, busyboxPath, bashPath, applets)
	if err := buildRootfs(ctx, es, filepath.Join(work, "rootfs"), filepath.Join(out, "rootfs.ext4"), in.digest()); err != nil {
		return fmt.Errorf("root filesystem: %w", err)
	}
	b.progress("image min: rootfs with bash, busybox and %d applets in %s", len(applets), since(start))

	m := manifest{
		Name: "min", Digest: "sha256:" + in.digest(), KernelVersion: k.Version,
		Inputs: in, Built: time.Now().UTC().Truncate(time.Second),
	}
	for _, p := range mods {
		m.Modules = append(m.Modules, moduleName(p))
	}
	if err := writeManifest(filepath.Join(out, "image.json"), m); err != nil {
		return err
	}
	if err := syncTree(out); err != nil {
		return err
	}
	if err := os.Rename(out, imgDir); err != nil {
		return fmt.Errorf("move image into place: %w", err)
	}
	return syncDir(dir)
}

// loadImage reads a finished image directory. A missing directory or
// image.json is fs.ErrNotExist: the image is not built.
func loadImage(imgDir string) (*Image, error) {
	data, err := os.ReadFile(filepath.Join(imgDir, "image.json"))
	if err != nil {
		return nil, err
	}
	var m manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("read %s: %w", filepath.Join(imgDir, "image.json"), err)
	}
	img := &Image{
		Name: m.Name, Digest: m.Digest, KernelVersion: m.KernelVersion,
		Kernel: filepath.Join(imgDir, "vmlinuz"),
		Initrd: filepath.Join(imgDir, "initrd"),
		RootFS: filepath.Join(imgDir, "rootfs.ext4"),
	}
	for _, p := range []string{img.Kernel, img.Initrd, img.RootFS} {
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("image %s is incomplete: %w", imgDir, err)
		}
	}
	return img, nil
}

func writeManifest(path string, m manifest) error {
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}

// removeStale deletes builds and downloads left by a process that died.
// The caller holds the directory lock, so none of them is in progress.
func removeStale(dir string, log *slog.Logger) {
	for _, glob := range []string{".build-min-*", filepath.Join("debs", ".download-*")} {
		stale, _ := filepath.Glob(filepath.Join(dir, glob))
		for _, p := range stale {
			log.Info("removing stale image build", "path", p)
			if err := os.RemoveAll(p); err != nil {
				log.Warn("remove stale image build", "path", p, "err", err)
			}
		}
	}
}

func (b *Builder) memoHit() (*Image, bool) {
	if b.memo == nil {
		return nil, false
	}
	agent, err1 := keyOf(b.AgentBinary)
	busybox, err2 := keyOf(busyboxPath)
	if err1 != nil || err2 != nil || agent != b.memo.agent || busybox != b.memo.busybox ||
		b.Dir != b.memo.dir || b.AgentBinary != b.memo.agentPath {
		return nil, false
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(b.memo.img.RootFS), "image.json")); err != nil {
		return nil, false
	}
	img := b.memo.img
	return &img, true
}

func (b *Builder) remember(img Image) {
	agent, err1 := keyOf(b.AgentBinary)
	busybox, err2 := keyOf(busyboxPath)
	if err1 != nil || err2 != nil {
		b.memo = nil
		return
	}
	b.memo = &memo{dir: b.Dir, agentPath: b.AgentBinary, agent: agent, busybox: busybox, img: img}
}

func keyOf(path string) (fileKey, error) {
	st, err := os.Stat(path)
	if err != nil {
		return fileKey{}, err
	}
	return fileKey{size: st.Size(), mtime: st.ModTime()}, nil
}

func (b *Builder) logger() *slog.Logger {
	if b.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return b.Log
}

func (b *Builder) progress(format string, args ...any) {
	if b.Progress != nil {
		fmt.Fprintf(b.Progress, format+"\n", args...)
	}
}

func since(t time.Time) time.Duration {
	return time.Since(t).Round(10 * time.Millisecond)
}

func sizeOf(path string) string {
	st, err := os.Stat(path)
	if err != nil {
		return "?"
	}
	return fmt.Sprintf("%.1f MB", float64(st.Size())/1e6)
}

func sha256File(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
