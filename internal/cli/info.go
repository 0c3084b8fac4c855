package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/openslicer/openslicer/api"
)

// infoOptions are the flags of `slicer info`.
type infoOptions struct {
	*globals
	ClientVersion string
}

func newInfoCmd(g *globals, runF func(context.Context, *infoOptions) error) *cobra.Command {
	o := &infoOptions{globals: g}
	cmd := &cobra.Command{
		Use:   "info",
		Short: "Print client and daemon versions, and how the daemon runs guests",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.ClientVersion = firstNonEmpty(cmd.Root().Version, "dev")
			if runF != nil {
				return runF(cmd.Context(), o)
			}
			return runInfo(cmd.Context(), o)
		},
	}
	addConnFlags(cmd, &g.conn)
	return cmd
}

func runInfo(ctx context.Context, o *infoOptions) error {
	c, err := o.client()
	if err != nil {
		return err
	}
	info, err := c.Info(ctx)
	if err != nil {
		return fmt.Errorf("client version %s; %w", o.ClientVersion, err)
	}
	return writeInfo(o.io.Out, o.ClientVersion, info)
}

func writeInfo(w io.Writer, clientVersion string, info *api.Info) error {
	server := firstNonEmpty(info.Version, "unknown")
	if info.GitCommit != "" {
		server += " (" + info.GitCommit + ")"
	}
	_, err := fmt.Fprintf(w, "Client version:  %s\nServer version:  %s\nServer platform: %s/%s\n",
		clientVersion, server, firstNonEmpty(info.Platform, "?"), firstNonEmpty(info.Arch, "?"))
	if err != nil || info.Accelerator == "" {
		return err // Slicer's daemon does not say
	}
	accel := info.Accelerator
	if info.AcceleratorReason != "" {
		accel += " (" + info.AcceleratorReason + ")"
	}
	if _, err = fmt.Fprintf(w, "Accelerator:     %s\n", accel); err != nil {
		return err
	}
	for _, p := range info.Pools {
		if _, err := fmt.Fprintf(w, "Warm pool:       %s: %d ready, %d filling, target %d\n", p.HostGroup, p.Ready, p.Filling, p.Target); err != nil {
			return err
		}
	}
	return nil
}
