package daemon

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/openslicer/openslicer/internal/config"
	"github.com/openslicer/openslicer/internal/doctor"
	"github.com/openslicer/openslicer/internal/hypervisor/qemu"
)

// doctorCommand is `slicer doctor [CONFIG]`: check this host for what
// `slicer up` with the same arguments needs.
func doctorCommand(out io.Writer) *cobra.Command {
	var dataDir, imageDir, agentBin, accel string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "doctor [CONFIG]",
		Short: "Check that this host can run the daemon, and say how to fix what is missing",
		Long: "Check that this host can run `slicer up` with the same config and directories:\n" +
			"QEMU, the accelerator, slicer-agent, what building the min image takes, host\n" +
			"networking, free space, and the API address. Exits 1 when a check is a blocker\n" +
			"(FAIL); warnings do not fail. Networking is probed only as root.",
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opt, err := doctorOptions(args, dataDir, imageDir, agentBin, accel)
			if err != nil {
				return err
			}
			rep := doctor.Run(cmd.Context(), opt)
			if asJSON {
				err = rep.WriteJSON(out)
			} else {
				err = rep.WriteTable(out)
			}
			if err != nil {
				return err
			}
			if !rep.OK {
				return fmt.Errorf("doctor: slicer up cannot run on this host (blockers: %d)", rep.Blockers())
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dataDir, "data-dir", "", "the data directory slicer up will use")
	f.StringVar(&imageDir, "image-dir", "", "the image cache slicer up will use (default <data-dir>/images)")
	f.StringVar(&agentBin, "agent", "", "the slicer-agent binary slicer up will use (default: next to slicer)")
	f.BoolVar(&asJSON, "json", false, "print the report as JSON")
	f.StringVar(&accel, "accel", "", "accelerator mode to check, as for slicer up: auto, kvm or tcg (default $"+qemu.AccelEnv+", else auto)")
	return cmd
}

// doctorOptions resolves the config and paths as `slicer up` would. A
// config that does not load is a failed check, not an error: the other
// checks run against the embedded default.
func doctorOptions(args []string, dataDir, imageDir, agentBin, accel string) (doctor.Options, error) {
	cwd, err := os.Getwd()
	if err != nil {
		return doctor.Options{}, err
	}
	paths := ResolvePaths(dataDir, cwd)
	if imageDir != "" {
		paths.Images = imageDir
	}
	opt := doctor.Options{
		DataDir: paths.DataDir, ImageDir: paths.Images,
		FindAgent: func() (string, error) { return findAgent(agentBin) },
	}
	if len(args) == 1 {
		opt.ConfigName = args[0]
		// QEMU has its own check; other backends are judged by canRun.
		canRunOther := func(h string) error {
			if h == "qemu" {
				return nil
			}
			return canRun(h)
		}
		opt.Config, opt.ConfigErr = config.LoadAndValidate(args[0], defaultHypervisor(),
			config.ValidateOptions{CanRun: canRunOther, BaseDir: filepath.Dir(args[0])})
	}
	if opt.Config == nil {
		if opt.ConfigName == "" {
			opt.ConfigName = "the embedded default config"
		}
		opt.Config = config.Default(defaultHypervisor())
		config.ApplyDefaults(opt.Config, defaultHypervisor())
	}
	mode, err := qemu.AccelModeFrom(accel, os.Getenv(qemu.AccelEnv))
	if err != nil {
		return doctor.Options{}, err
	}
	kernel := opt.Config.KernelFile
	if kernel == "" {
		kernel = newestMinKernel(paths.Images)
	}
	opt.Accel = func(ctx context.Context) doctor.Result {
		b := qemu.New(nil)
		b.CacheDir = paths.Images
		d, err := b.DecideAccel(ctx, mode, kernel)
		return doctor.AccelResult(d, err, kernel != "")
	}
	if opt.Config.API.IsUnixSocket() {
		opt.APISocket = paths.socketPath(opt.Config.API.BindAddress)
	}
	return opt, nil
}

// newestMinKernel is the kernel of the newest min image built in dir, the
// one `slicer up` would probe KVM with; "" when none is built yet.
func newestMinKernel(dir string) string {
	paths, _ := filepath.Glob(filepath.Join(dir, "min-*", "vmlinuz"))
	newest, at := "", time.Time{}
	for _, p := range paths {
		if fi, err := os.Stat(p); err == nil && fi.ModTime().After(at) {
			newest, at = p, fi.ModTime()
		}
	}
	return newest
}
