package daemon

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"

	"github.com/openslicer/openslicer/internal/config"
	"github.com/openslicer/openslicer/internal/image"
	"github.com/openslicer/openslicer/internal/vm"
)

// imageSource resolves the config's image values for the VM manager:
// "min" is built in, "debian" is built by `slicer image build debian`,
// anything else is an OCI image pulled into <images>/oci.
type imageSource struct {
	r   *image.Resolver
	log *slog.Logger
}

func newImageSource(cfg *config.Config, dir, agent string, log *slog.Logger, out io.Writer) *imageSource {
	kernelFile := cfg.KernelFile
	if kernelFile != "" && cfg.Source != nil {
		kernelFile = config.Resolve(filepath.Dir(cfg.Source.File), kernelFile)
	}
	return &imageSource{log: log, r: &image.Resolver{
		Min:         &image.Builder{Dir: dir, AgentBinary: agent, Log: log, Progress: out},
		OCI:         &image.Store{Dir: filepath.Join(dir, "oci"), Log: log, Progress: image.LogProgress(log)},
		KernelFile:  kernelFile,
		KernelImage: cfg.KernelImage,
		Insecure:    cfg.InsecureRegistry,
	}}
}

// prepare resolves every image the config names, so a missing or broken
// image stops the daemon at start rather than failing each create. It
// returns the kernel of the first group's image, the one the accelerator's
// boot probe runs.
func (s *imageSource) prepare(ctx context.Context, cfg *config.Config) (kernel string, err error) {
	seen := map[string]bool{}
	for _, g := range cfg.HostGroups {
		if g.Storage == "devmapper" || g.Storage == "zfs" {
			s.log.Warn("this daemon cannot provide the group's storage: creates in it are answered 501", "group", g.Name, "storage", g.Storage)
		}
		name := cfg.ImageFor(g)
		if seen[name] {
			continue
		}
		seen[name] = true
		b, err := s.r.Resolve(ctx, name)
		if err != nil {
			return "", fmt.Errorf("prepare image %q: %w", name, err)
		}
		s.log.Info("image ready", "image", name, "id", b.ID, "rootfs", b.RootFS, "kernel", b.KernelFrom)
		if kernel == "" {
			kernel = b.Kernel
		}
	}
	return kernel, nil
}

func (s *imageSource) Resolve(ctx context.Context, name string) (vm.BootImage, error) {
	b, err := s.r.Resolve(ctx, name)
	if err != nil {
		return vm.BootImage{}, err
	}
	bi := vm.BootImage{Kernel: b.Kernel, Initrd: b.Initrd, RootFS: b.RootFS, ImageID: b.ID}
	if c := b.Config; c != nil {
		bi.Env, bi.WorkingDir, bi.User = c.Env, c.WorkingDir, c.User
	}
	return bi, nil
}
