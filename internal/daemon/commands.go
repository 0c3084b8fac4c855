package daemon

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/openslicer/openslicer/internal/image"
)

// Commands returns the subcommands of `slicer` that work on this host rather
// than over the REST API: up, new, image, doctor, service.
func Commands(version, commit string, out, errOut io.Writer) []*cobra.Command {
	return []*cobra.Command{upCommand(version, commit, out, errOut), newCommand(out), imageCommand(out, errOut),
		doctorCommand(out), serviceCommand(out)}
}

func upCommand(version, commit string, out, errOut io.Writer) *cobra.Command {
	var opt Options
	var file string
	var debug bool
	cmd := &cobra.Command{
		Use:   "up [CONFIG]",
		Short: "Run the daemon (the embedded default config when no file is given)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				if file != "" && file != args[0] {
					return fmt.Errorf("config given twice: %s and -f %s", args[0], file)
				}
				file = args[0]
			}
			opt.ConfigPath, opt.Version, opt.GitCommit, opt.Out = file, version, commit, out
			opt.Log = newLogger(errOut, debug)
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return Run(ctx, opt)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&file, "file", "f", "", "config file (same as the CONFIG argument)")
	f.StringVar(&opt.DataDir, "data-dir", "", "keep every file the daemon writes under this directory")
	f.StringVar(&opt.ImageDir, "image-dir", "", "image cache directory (default <data-dir>/images)")
	f.StringVar(&opt.AgentBinary, "agent", "", "slicer-agent binary to put in images (default: next to slicer)")
	f.StringVar(&opt.Accel, "accel", "", "accelerator: auto (KVM only when a boot probe proves it works), kvm or tcg (default $SLICER_ACCEL, else auto)")
	f.BoolVar(&debug, "debug", false, "log at debug level")
	f.BoolVar(&opt.SuspendOnShutdown, "suspend-on-shutdown", false,
		"on stop, suspend running persistent VMs (memory kept on disk) instead of shutting them down; the next start restores them")
	return cmd
}

func imageCommand(out, errOut io.Writer) *cobra.Command {
	root := &cobra.Command{Use: "image", Short: "Manage guest images"}
	var dataDir, imageDir, agentBin string
	var packages []string
	build := &cobra.Command{
		Use:   "build [min|debian]",
		Short: "Build the built-in min image now (slicer up does it on first start), or the debian image",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 && args[0] == "debian" {
				return buildDebian(cmd.Context(), imageFlags{dataDir, imageDir}, packages, out, errOut)
			}
			if len(args) == 1 && args[0] != "min" {
				return fmt.Errorf("image build %q: want min or debian", args[0])
			}
			cwd, err := os.Getwd()
			if err != nil {
				return err
			}
			dir := ResolvePaths(dataDir, cwd).Images
			if imageDir != "" {
				dir = imageDir
			}
			agent, err := findAgent(agentBin)
			if err != nil {
				return err
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			b := &image.Builder{Dir: dir, AgentBinary: agent, Log: newLogger(errOut, false), Progress: out}
			img, err := b.Min(context.WithoutCancel(cmd.Context()))
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "image min %s ready in %s\n", img.Digest, filepath.Dir(img.RootFS))
			return nil
		},
	}
	build.Flags().StringVar(&dataDir, "data-dir", "", "data directory of the daemon that will use the image")
	build.Flags().StringVar(&imageDir, "image-dir", "", "image cache directory (default <data-dir>/images)")
	build.Flags().StringVar(&agentBin, "agent", "", "slicer-agent binary (default: next to slicer)")
	build.Flags().StringSliceVar(&packages, "packages", nil, "debian: more Debian packages to install (a,b,...)")
	root.AddCommand(build)
	root.AddCommand(imageCacheCommands(out, errOut)...)
	return root
}

func newLogger(w io.Writer, debug bool) *slog.Logger {
	level := slog.LevelInfo
	if debug {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}
