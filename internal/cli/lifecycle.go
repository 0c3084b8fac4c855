package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/openslicer/openslicer/client"
)

// lifecycleOptions are the flags of the lifecycle commands (shutdown,
// pause, resume, suspend, restore, relaunch); each uses only some.
type lifecycleOptions struct {
	*globals
	Name    string
	Action  string        // shutdown
	Wait    bool          // restore
	Timeout time.Duration // restore
}

// lifecycleOp is one lifecycle command: what it does to a VM and the past
// tense it prints.
type lifecycleOp struct {
	use, short, done string
	do               func(ctx context.Context, c *client.Client, host string, o *lifecycleOptions) error
}

var lifecycleOps = []lifecycleOp{
	{"shutdown", "Shut down or reboot a VM", "Shut down", func(ctx context.Context, c *client.Client, h string, o *lifecycleOptions) error {
		return c.Shutdown(ctx, h, o.Action)
	}},
	{"pause", "Freeze a VM's vCPUs", "Paused", func(ctx context.Context, c *client.Client, h string, _ *lifecycleOptions) error {
		return c.Pause(ctx, h)
	}},
	{"resume", "Thaw a paused VM (restores a suspended one)", "Resumed", func(ctx context.Context, c *client.Client, h string, _ *lifecycleOptions) error {
		return c.Resume(ctx, h)
	}},
	{"suspend", "Snapshot a VM to disk and stop it", "Suspended", func(ctx context.Context, c *client.Client, h string, _ *lifecycleOptions) error {
		return c.Suspend(ctx, h)
	}},
	{"restore", "Restore a suspended VM", "Restored", func(ctx context.Context, c *client.Client, h string, o *lifecycleOptions) error {
		wait := ""
		if o.Wait {
			wait = client.WaitAgent
		}
		return c.Restore(ctx, h, wait, o.Timeout)
	}},
	{"relaunch", "Boot a stopped persistent VM again", "Relaunched", func(ctx context.Context, c *client.Client, h string, _ *lifecycleOptions) error {
		_, err := c.Relaunch(ctx, h)
		return err
	}},
}

func newLifecycleCmds(g *globals) []*cobra.Command {
	var cmds []*cobra.Command
	for _, op := range lifecycleOps {
		cmds = append(cmds, newLifecycleCmd(g, op, nil))
	}
	return cmds
}

func newLifecycleCmd(g *globals, op lifecycleOp, runF func(context.Context, *lifecycleOptions) error) *cobra.Command {
	o := &lifecycleOptions{globals: g}
	cmd := &cobra.Command{
		Use:   op.use + " NAME",
		Short: op.short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Name = args[0]
			if runF != nil {
				return runF(cmd.Context(), o)
			}
			return runLifecycle(cmd.Context(), op, o)
		},
	}
	switch op.use {
	case "shutdown":
		cmd.Flags().StringVar(&o.Action, "action", "", "shutdown or reboot (default: the daemon's choice)")
	case "restore":
		cmd.Flags().BoolVar(&o.Wait, "wait", false, "wait until the guest agent answers")
		cmd.Flags().DurationVar(&o.Timeout, "timeout", 0, "how long to wait with --wait (default: the daemon's)")
	}
	return cmd
}

func runLifecycle(ctx context.Context, op lifecycleOp, o *lifecycleOptions) error {
	c, err := o.client()
	if err != nil {
		return err
	}
	host := o.Name
	err = withName(ctx, c, o.Name, func(h string) error {
		host = h
		return op.do(ctx, c, h, o)
	})
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(o.io.Out, "%s %s\n", op.done, host)
	return err
}
