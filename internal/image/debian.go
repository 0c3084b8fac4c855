package image

import (
	"bufio"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/openslicer/openslicer/internal/imageref"
)

// DebianPackages are what the debian image always has on top of Debian's
// essential packages: systemd as init, apt, and what makes it feel like a
// small cloud VM.
var DebianPackages = []string{
	"systemd", "systemd-sysv", "dbus", "apt", "ca-certificates", "iproute2", "procps", "sudo", "bash",
}

// debianUser is the uid-1000 account of the debian image, as in Slicer's
// Ubuntu-based images, with passwordless sudo.
const debianUser = "ubuntu"

// debianPlan is the mmdebstrap command line that writes the root file
// system of the debian image as a tar: Debian's suite of the host, from
// the host's own apt sources, with the packages and the ubuntu user.
func debianPlan(suite string, sources, extra []string, out string) []string {
	pkgs := append(append([]string{}, DebianPackages...), extra...)
	args := []string{
		"--variant=apt", "--format=tar",
		"--include=" + strings.Join(pkgs, ","),
		"--customize-hook=chroot \"$1\" useradd --create-home --uid 1000 --user-group --shell /bin/bash --groups sudo " + debianUser,
		"--customize-hook=echo '" + debianUser + " ALL=(ALL) NOPASSWD:ALL' > \"$1/etc/sudoers.d/90-" + debianUser + "\" && chmod 0440 \"$1/etc/sudoers.d/90-" + debianUser + "\"",
		"--customize-hook=echo debian > \"$1/etc/hostname\"",
		"--customize-hook=printf '127.0.0.1\\tlocalhost\\n::1\\tlocalhost ip6-localhost ip6-loopback\\n' > \"$1/etc/hosts\"",
		// Each VM gets its own machine ID at first boot.
		"--customize-hook=: > \"$1/etc/machine-id\"",
		suite, out,
	}
	return append(args, sources...)
}

// hostSources lists the host's enabled apt source files (sources.list and
// sources.list.d/*.list or *.sources); mmdebstrap pastes each into the new
// system, so it installs from the same mirrors the host uses.
func hostSources(etcApt string) []string {
	var out []string
	if st, err := os.Stat(filepath.Join(etcApt, "sources.list")); err == nil && st.Size() > 0 {
		out = append(out, filepath.Join(etcApt, "sources.list"))
	}
	for _, glob := range []string{"*.list", "*.sources"} {
		m, _ := filepath.Glob(filepath.Join(etcApt, "sources.list.d", glob))
		sort.Strings(m)
		out = append(out, m...)
	}
	return out
}

// hostSuite is VERSION_CODENAME from os-release ("bookworm").
func hostSuite(osRelease string) (string, error) {
	f, err := os.Open(osRelease)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VERSION_CODENAME="); ok && v != "" {
			return strings.Trim(v, `"`), nil
		}
	}
	return "", fmt.Errorf("%s names no VERSION_CODENAME: the debian image is built with the host's Debian suite", osRelease)
}

// BuildDebian builds the debian image with mmdebstrap, writes it as an OCI
// layout in <Dir>/layouts/debian and builds it into the store under the
// name "debian", so it boots the way any pulled image does.
func (s *Store) BuildDebian(ctx context.Context, extra []string, progress io.Writer) (*OCIImage, error) {
	mm, err := lookTool("mmdebstrap", "mmdebstrap")
	if err != nil {
		return nil, err
	}
	suite, err := hostSuite("/etc/os-release")
	if err != nil {
		return nil, err
	}
	sources := hostSources("/etc/apt")
	if len(sources) == 0 {
		return nil, fmt.Errorf("no apt sources in /etc/apt: the debian image is built from the host's apt sources")
	}
	// The lock is held throughout, so two builds do not share the layout
	// and the stale-work sweep of another process leaves this one alone.
	unlock, err := s.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	work, err := os.MkdirTemp(s.Dir, ".archive-debian-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	rootTar := filepath.Join(work, "rootfs.tar")
	start := time.Now()
	cmd := exec.CommandContext(ctx, mm, debianPlan(suite, sources, extra, rootTar)...)
	cmd.Stdout, cmd.Stderr = progress, progress
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("mmdebstrap: %w", err)
	}
	fmt.Fprintf(progress, "debian: root file system (%s) in %s\n", sizeOf(rootTar), since(start))

	img, err := debianImage(rootTar, extra)
	if err != nil {
		return nil, err
	}
	dir := s.debianLayout().Name
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		return nil, err
	}
	if err := lp.AppendImage(img, layout.WithAnnotations(map[string]string{refNameAnnotation: "latest"})); err != nil {
		return nil, fmt.Errorf("write %s: %w", dir, err)
	}
	fmt.Fprintf(progress, "debian: OCI layout in %s after %s\n", dir, since(start))
	return s.pullLocked(ctx, imageref.Debian, s.debianLayout())
}

// debianLayout is where BuildDebian writes the debian image's OCI layout.
func (s *Store) debianLayout() imageref.Source {
	return imageref.Source{Kind: imageref.OCILayout, Name: filepath.Join(s.Dir, "layouts", "debian"), Ref: "latest"}
}

// debianImage is a one-layer OCI image of a root file system tar, which
// boots /sbin/init (systemd).
func debianImage(rootTar string, extra []string) (v1.Image, error) {
	layer, err := tarball.LayerFromFile(rootTar, tarball.WithCompressionLevel(gzip.BestSpeed))
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Created = v1.Time{Time: time.Now().UTC().Truncate(time.Second)}
	cf.Config.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	cf.Config.Cmd = []string{"/sbin/init"}
	cf.Config.Labels = map[string]string{
		"org.openslicer.image":    "debian",
		"org.openslicer.packages": strings.Join(append(append([]string{}, DebianPackages...), extra...), ","),
	}
	return mutate.ConfigFile(img, cf)
}
