package cli

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/client"
)

// listOptions are the flags of `slicer vm list`.
type listOptions struct {
	*globals
	Group string
	JSON  bool
}

func newListCmd(g *globals, runF func(context.Context, *listOptions) error) *cobra.Command {
	o := &listOptions{globals: g}
	cmd := &cobra.Command{
		Use:     "list [GROUP]",
		Aliases: []string{"ls", "l"},
		Short:   "List VMs, of every group or of GROUP",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				o.Group = args[0]
			}
			if runF != nil {
				return runF(cmd.Context(), o)
			}
			return runList(cmd.Context(), o)
		},
	}
	cmd.Flags().BoolVar(&o.JSON, "json", false, "print JSON")
	return cmd
}

func runList(ctx context.Context, o *listOptions) error {
	c, err := o.client()
	if err != nil {
		return err
	}
	var nodes []api.Node
	if o.Group != "" {
		nodes, err = c.GroupNodes(ctx, o.Group, client.ListOptions{})
	} else {
		nodes, err = c.ListNodes(ctx, client.ListOptions{})
	}
	if err != nil {
		return err
	}
	if o.JSON {
		return writeJSON(o.io.Out, nonNil(nodes))
	}
	return writeNodeTable(o.io.Out, nodes, o.loc)
}
