package daemon

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/openslicer/openslicer/internal/config"
	"github.com/openslicer/openslicer/internal/systemd"
)

// serviceCommand is `slicer service generate`: a systemd unit for
// `slicer up`.
func serviceCommand(out io.Writer) *cobra.Command {
	root := &cobra.Command{Use: "service", Short: "Run the daemon as a systemd service"}
	var o systemd.UnitOptions
	var install, force bool
	gen := &cobra.Command{
		Use:   "generate --name NAME [flags] [CONFIG]",
		Short: "Write a systemd unit that runs slicer up (printed, or installed with --install)",
		Long: "Write a systemd unit that runs `slicer up CONFIG` as root, hardened as far as the\n" +
			"daemon allows (docs/service.md). Without --install it is printed; with --install it is\n" +
			"written to " + systemd.UnitDir + "/NAME.service (never over an existing file without\n" +
			"--force) and systemd is reloaded. Without CONFIG the service runs the embedded default.",
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := resolveUnit(&o, args); err != nil {
				return err
			}
			unit, err := systemd.Render(o)
			if err != nil {
				return err
			}
			if !install {
				_, err := io.WriteString(out, unit)
				return err
			}
			done, err := systemd.Installer{}.Install(cmd.Context(), o.Name, unit, force)
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "Wrote %s\n", done.Path)
			if !done.Reloaded {
				fmt.Fprintln(out, "systemd is not running here: run systemctl daemon-reload once it is.")
			}
			_, err = fmt.Fprintf(out, "Start it now and at boot with: systemctl enable --now %s\n", o.Name)
			return err
		},
	}
	f := gen.Flags()
	f.StringVar(&o.Name, "name", "", "service name (the unit is NAME.service)")
	f.StringVar(&o.User, "user", "", "user to run the daemon as (default root, which networks need)")
	f.StringVar(&o.WorkingDirectory, "working-directory", "", "the daemon's working directory, its data directory without --data-dir (default: the current directory)")
	f.IntVar(&o.TimeoutStopSec, "timeout-stop-sec", systemd.DefaultTimeoutStopSec, "seconds systemd waits for the daemon to stop its VMs")
	f.BoolVar(&o.SuspendOnShutdown, "suspend-on-shutdown", false, "pass --suspend-on-shutdown to slicer up")
	f.StringVar(&o.DataDir, "data-dir", "", "pass --data-dir to slicer up")
	f.StringVar(&o.ImageDir, "image-dir", "", "pass --image-dir to slicer up")
	f.BoolVar(&install, "install", false, "write the unit to "+systemd.UnitDir+" and reload systemd")
	f.BoolVar(&force, "force", false, "with --install, replace an existing unit")
	_ = gen.MarkFlagRequired("name")
	root.AddCommand(gen)
	return root
}

// resolveUnit fills in the unit's paths: this slicer binary, and the
// config, working and data directories made absolute. The config must load
// and validate, so the service does not fail at its first start.
func resolveUnit(o *systemd.UnitOptions, args []string) error {
	cwd, err := os.Getwd()
	if err != nil {
		return err
	}
	abs := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(cwd, p)
	}
	if o.Binary, err = os.Executable(); err != nil {
		return fmt.Errorf("find the slicer binary: %w", err)
	}
	if o.WorkingDirectory == "" {
		o.WorkingDirectory = cwd
	}
	o.WorkingDirectory, o.DataDir, o.ImageDir = abs(o.WorkingDirectory), abs(o.DataDir), abs(o.ImageDir)
	if len(args) == 1 {
		o.Config = abs(args[0])
		if _, err := config.LoadAndValidate(o.Config, defaultHypervisor(), config.ValidateOptions{BaseDir: filepath.Dir(o.Config)}); err != nil {
			return err
		}
	}
	return nil
}
