package cli

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/client"
)

// addOptions are the flags of `slicer vm add`.
type addOptions struct {
	*globals
	Group        string
	Tags         []string
	Name         string
	CPUs         int
	GPUs         int
	RAMGB        int
	RAMMB        int
	Persistent   bool
	Userdata     string
	UserdataFile string
	Wait         bool
	WaitUserdata bool
	Timeout      time.Duration
	JSON         bool
}

func newAddCmd(g *globals, runF func(context.Context, *addOptions) error) *cobra.Command {
	o := &addOptions{globals: g}
	cmd := &cobra.Command{
		Use:     "add [GROUP]",
		Aliases: []string{"launch"},
		Short:   "Launch a VM in a host group (the only group when GROUP is omitted)",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				o.Group = args[0]
			}
			if runF != nil {
				return runF(cmd.Context(), o)
			}
			return runAdd(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&o.Tags, "tag", nil, "tag as key=value (repeatable)")
	f.StringVarP(&o.Name, "name", "n", "", "friendly name (adds the tag name=NAME)")
	f.IntVar(&o.CPUs, "cpus", 0, "vCPUs (default: the group's)")
	f.IntVar(&o.GPUs, "gpus", 0, "GPUs")
	f.IntVar(&o.RAMGB, "ram-gb", 0, "RAM in GiB (default: the group's)")
	f.IntVar(&o.RAMMB, "ram-mb", 0, "RAM in MiB (default: the group's)")
	f.BoolVar(&o.Persistent, "persistent", false, "keep the VM's disk and record when it stops")
	f.StringVar(&o.Userdata, "userdata", "", "userdata script to run at first boot")
	f.StringVar(&o.UserdataFile, "userdata-file", "", "file holding the userdata script")
	f.BoolVar(&o.Wait, "wait", false, "wait until the guest agent answers")
	f.BoolVar(&o.WaitUserdata, "wait-userdata", false, "wait until userdata has run (implies --wait)")
	f.DurationVar(&o.Timeout, "timeout", 5*time.Minute, "how long to wait with --wait")
	f.BoolVar(&o.JSON, "json", false, "print the create response as JSON")
	cmd.MarkFlagsMutuallyExclusive("ram-gb", "ram-mb")
	cmd.MarkFlagsMutuallyExclusive("userdata", "userdata-file")
	return cmd
}

// request builds the create call from the flags; userdata is the contents
// of --userdata or --userdata-file.
func (o *addOptions) request(userdata string) (api.CreateNodeRequest, client.CreateOptions) {
	req := api.CreateNodeRequest{
		CPUs:       o.CPUs,
		GPUCount:   o.GPUs,
		Persistent: o.Persistent,
		Userdata:   userdata,
		RamBytes:   int64(o.RAMGB)*gib + int64(o.RAMMB)*mib,
	}
	req.Tags = append(req.Tags, o.Tags...)
	if o.Name != "" {
		req.Tags = append(req.Tags, nameTag+o.Name)
	}
	var opts client.CreateOptions
	switch {
	case o.WaitUserdata:
		opts.Wait = client.WaitUserdata
	case o.Wait:
		opts.Wait = client.WaitAgent
	}
	if opts.Wait != "" {
		opts.Timeout = o.Timeout
	}
	return req, opts
}

func runAdd(ctx context.Context, o *addOptions) error {
	userdata := o.Userdata
	if o.UserdataFile != "" {
		b, err := os.ReadFile(o.UserdataFile)
		if err != nil {
			return fmt.Errorf("read userdata: %w", err)
		}
		userdata = string(b)
	}
	c, err := o.client()
	if err != nil {
		return err
	}
	req, opts := o.request(userdata)
	resp, err := c.CreateNode(ctx, o.Group, req, opts)
	if err != nil {
		return err
	}
	if o.JSON {
		return writeJSON(o.io.Out, resp)
	}
	group := firstNonEmpty(resp.HostGroup, o.Group)
	cpus, ram := req.CPUs, req.RamBytes
	if cpus == 0 || ram == 0 {
		// The group's defaults applied; ask for them. A failure here only
		// leaves the summary with a "?".
		if groups, err := c.HostGroups(ctx); err == nil {
			for _, g := range groups {
				if g.Name == group || (group == "" && len(groups) == 1) {
					group = g.Name
					cpus = max(cpus, g.CPUs)
					ram = max(ram, g.RamBytes)
				}
			}
		}
	}
	return writeCreated(o.io.Out, resp, group, cpus, ram, req.GPUCount)
}

// groupOptions are the flags of `slicer vm group`.
type groupOptions struct {
	*globals
	JSON bool
}

func newGroupCmd(g *globals, runF func(context.Context, *groupOptions) error) *cobra.Command {
	o := &groupOptions{globals: g}
	cmd := &cobra.Command{
		Use:     "group",
		Aliases: []string{"groups"},
		Short:   "List host groups",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF(cmd.Context(), o)
			}
			return runGroup(cmd.Context(), o)
		},
	}
	cmd.Flags().BoolVar(&o.JSON, "json", false, "print JSON")
	return cmd
}

func runGroup(ctx context.Context, o *groupOptions) error {
	c, err := o.client()
	if err != nil {
		return err
	}
	groups, err := c.HostGroups(ctx)
	if err != nil {
		return err
	}
	if o.JSON {
		return writeJSON(o.io.Out, nonNil(groups))
	}
	return writeGroupTable(o.io.Out, groups)
}

// deleteOptions are the arguments of `slicer vm delete`.
type deleteOptions struct {
	*globals
	Name  string
	Group string
}

func newDeleteCmd(g *globals, runF func(context.Context, *deleteOptions) error) *cobra.Command {
	o := &deleteOptions{globals: g}
	return &cobra.Command{
		Use:     "delete NAME [GROUP]",
		Aliases: []string{"rm", "remove"},
		Short:   "Delete a VM (its group is looked up when not given)",
		Args:    cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Name = args[0]
			if len(args) == 2 {
				o.Group = args[1]
			}
			if runF != nil {
				return runF(cmd.Context(), o)
			}
			return runDelete(cmd.Context(), o)
		},
	}
}

func runDelete(ctx context.Context, o *deleteOptions) error {
	c, err := o.client()
	if err != nil {
		return err
	}
	var resp *api.DeleteResponse
	host := o.Name
	if o.Group != "" {
		err = withName(ctx, c, o.Name, func(h string) error {
			host = h
			resp, err = c.DeleteNode(ctx, o.Group, h)
			return err
		})
	} else {
		var node *api.Node
		if node, err = findNode(ctx, c, o.Name); err != nil {
			return err
		}
		if node.HostGroup == "" {
			return fmt.Errorf("the daemon did not say which group %s is in; pass it: slicer vm delete %s GROUP", node.Hostname, o.Name)
		}
		host = node.Hostname
		resp, err = c.DeleteNode(ctx, node.HostGroup, host)
	}
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(o.io.Out, "Deleted %s (disk removed: %s)\n", host, firstNonEmpty(resp.DiskRemoved, "unknown"))
	return err
}

// nonNil turns a nil slice into an empty one, so JSON prints [] not null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
