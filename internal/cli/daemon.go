package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
)

// daemonOptions are the flags of `slicer daemon shutdown`.
type daemonOptions struct {
	*globals
	Detach bool
}

// newDaemonCmd returns `slicer daemon`, which controls a running daemon over
// its API (`slicer up` starts one).
func newDaemonCmd(g *globals, runF func(context.Context, *daemonOptions) error) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "daemon",
		Short: "Control the running daemon",
		Args:  cobra.ArbitraryArgs,
		RunE:  helpOrUnknown,
	}
	addConnFlags(cmd, &g.conn)
	o := &daemonOptions{globals: g}
	shutdown := &cobra.Command{
		Use:   "shutdown",
		Short: "Stop the daemon as SIGTERM does (--detach: leave persistent VMs running, to upgrade it)",
		Long: "Stop the daemon as SIGTERM does: ephemeral VMs are removed, persistent VMs are shut down\n" +
			"(or suspended, with slicer up --suspend-on-shutdown).\n\n" +
			"With --detach, persistent and count VMs keep running and the next daemon started on the\n" +
			"same data directory re-attaches them, their processes untouched: for replacing the\n" +
			"slicer binary. Ephemeral VMs are removed as on any stop.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if runF != nil {
				return runF(cmd.Context(), o)
			}
			return runDaemonShutdown(cmd.Context(), o)
		},
	}
	shutdown.Flags().BoolVar(&o.Detach, "detach", false, "leave persistent VMs running for the next daemon to re-attach")
	cmd.AddCommand(shutdown)
	return cmd
}

func runDaemonShutdown(ctx context.Context, o *daemonOptions) error {
	c, err := o.client()
	if err != nil {
		return err
	}
	if o.Detach {
		err = c.DetachDaemon(ctx)
	} else {
		err = c.ShutdownDaemon(ctx)
	}
	if err != nil {
		return err
	}
	if o.Detach {
		_, err = fmt.Fprintln(o.io.Out, "Daemon stopping; persistent VMs left running")
	} else {
		_, err = fmt.Fprintln(o.io.Out, "Daemon stopping")
	}
	return err
}
