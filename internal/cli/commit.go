package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/client"
)

// commitOptions are the flags of `vm commit NAME`, `vm commit list` and
// `vm commit delete ID`.
type commitOptions struct {
	*globals
	Name     string
	CacheKey string
	Mode     string
	Tags     []string
	JSON     bool
}

func newCommitCmd(g *globals) *cobra.Command {
	o := &commitOptions{globals: g}
	cmd := &cobra.Command{
		Use:   "commit NAME",
		Short: "Commit a stopped persistent VM's disk (or, with --mode memory, a running VM's memory and disk), to fork new VMs from (also: commit list, commit delete ID)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Name = args[0]
			return runCommit(cmd.Context(), o)
		},
	}
	cmd.Flags().StringVar(&o.CacheKey, "cache-key", "", "cache key: one commit holds it, a second commit claiming it fails")
	cmd.Flags().StringArrayVar(&o.Tags, "tag", nil, "tag of the commit (repeatable)")
	cmd.Flags().StringVar(&o.Mode, "mode", "", "disk (default: a stopped persistent VM's disk) or memory (a running VM's memory, devices and disk: its forks start with its processes)")
	cmd.Flags().BoolVar(&o.JSON, "json", false, "print the commit response as JSON")

	lo := &commitOptions{globals: g}
	list := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List commits",
		Args:    cobra.NoArgs,
		RunE:    func(cmd *cobra.Command, args []string) error { return runCommitList(cmd.Context(), lo) },
	}
	list.Flags().StringVar(&lo.CacheKey, "cache-key", "", "only the commit holding this cache key")
	list.Flags().StringArrayVar(&lo.Tags, "tag", nil, "only commits with this tag (repeatable: all of them)")
	list.Flags().BoolVar(&lo.JSON, "json", false, "print JSON")

	do := &commitOptions{globals: g}
	del := &cobra.Command{
		Use:     "delete ID",
		Aliases: []string{"rm", "remove"},
		Short:   "Delete a commit (refused while its source VM or a fork of it exists)",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			do.Name = args[0]
			return runCommitDelete(cmd.Context(), do)
		},
	}
	cmd.AddCommand(list, del)
	return cmd
}

func runCommit(ctx context.Context, o *commitOptions) error {
	c, err := o.client()
	if err != nil {
		return err
	}
	var resp *api.CommitVMResponse
	err = withName(ctx, c, o.Name, func(host string) error {
		resp, err = c.CommitVMWithOptions(ctx, host, api.CommitVMRequest{Mode: o.Mode, Tags: o.Tags, CacheKey: o.CacheKey})
		return err
	})
	if err != nil {
		return err
	}
	if o.JSON {
		return writeJSON(o.io.Out, resp)
	}
	key := ""
	if resp.CacheKey != "" {
		key = fmt.Sprintf(" (cache key %s)", resp.CacheKey)
	}
	_, err = fmt.Fprintf(o.io.Out, "Committed %s as %s%s\n", resp.Hostname, resp.CommitID, key)
	return err
}

func runCommitList(ctx context.Context, o *commitOptions) error {
	c, err := o.client()
	if err != nil {
		return err
	}
	commits, err := c.ListCommits(ctx, client.CommitListOptions{Tags: o.Tags, CacheKey: o.CacheKey})
	if err != nil {
		return err
	}
	if o.JSON {
		return writeJSON(o.io.Out, nonNil(commits))
	}
	t := newTable(o.io.Out, "COMMIT", "SOURCE", "GROUP", "MODE", "CREATED", "CACHE KEY", "TAGS")
	for _, ci := range commits {
		t.row(ci.CommitID, ci.SourceHostname, ci.SourceHostGroup, ci.Mode, formatTime(ci.CreatedAt, o.loc), ci.CacheKey, strings.Join(ci.Tags, ","))
	}
	return t.flush()
}

func runCommitDelete(ctx context.Context, o *commitOptions) error {
	c, err := o.client()
	if err != nil {
		return err
	}
	resp, err := c.DeleteCommit(ctx, o.Name)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(o.io.Out, "Deleted commit %s\n", resp.CommitID)
	return err
}

// forkOptions are the flags of `vm fork COMMIT_ID`.
type forkOptions struct {
	*globals
	CommitID   string
	Tags       []string
	Name       string
	Wait       bool
	Timeout    time.Duration
	Allow      []string
	NoAllow    bool
	Drop       []string
	Persistent bool
	JSON       bool
}

func newForkCmd(g *globals, runF func(context.Context, *forkOptions) error) *cobra.Command {
	o := &forkOptions{globals: g}
	cmd := &cobra.Command{
		Use:   "fork COMMIT_ID",
		Short: "Launch a VM from a commit, in its source's host group",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.CommitID = args[0]
			if runF != nil {
				return runF(cmd.Context(), o)
			}
			return runFork(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&o.Tags, "tag", nil, "tag as key=value, added to the source's (repeatable)")
	f.StringVarP(&o.Name, "name", "n", "", "friendly name (adds the tag name=NAME)")
	f.BoolVar(&o.Wait, "wait", false, "wait until the new VM's agent answers and its fix-ups are done")
	f.DurationVar(&o.Timeout, "timeout", 5*time.Minute, "how long the daemon waits with --wait")
	f.StringArrayVar(&o.Allow, "allow", nil, "egress allow list of the new VM, replacing the source's (isolated groups; repeatable)")
	f.BoolVar(&o.NoAllow, "no-allow", false, "clear the egress allow list (isolated groups)")
	f.StringArrayVar(&o.Drop, "drop", nil, "egress drop list of the new VM, replacing the source's (isolated groups; repeatable)")
	f.BoolVar(&o.Persistent, "persistent", false, "keep the new VM's disk and record when it stops")
	f.BoolVar(&o.JSON, "json", false, "print the fork response as JSON")
	cmd.MarkFlagsMutuallyExclusive("allow", "no-allow")
	return cmd
}

// request builds the fork call from the flags.
func (o *forkOptions) request() (api.ForkVMRequest, client.ForkOptions, error) {
	req := api.ForkVMRequest{Tags: append([]string{}, o.Tags...), Persistent: o.Persistent}
	if o.Name != "" {
		req.Tags = append(req.Tags, nameTag+o.Name)
	}
	if len(req.Tags) == 0 {
		req.Tags = nil
	}
	var net api.ForkVMNetworkPolicy
	switch {
	case o.NoAllow:
		net.Allow = &[]string{}
	case len(o.Allow) > 0:
		allow := append([]string{}, o.Allow...)
		net.Allow = &allow
	}
	if len(o.Drop) > 0 {
		drop := append([]string{}, o.Drop...)
		net.Drop = &drop
	}
	if net.Allow != nil || net.Drop != nil {
		req.Network = &net
	}
	opts := client.ForkOptions{Wait: client.WaitNone}
	if o.Wait {
		opts = client.ForkOptions{Wait: client.WaitAgent, Timeout: o.Timeout}
	}
	if o.Timeout < 0 {
		return req, opts, errors.New("--timeout must not be negative")
	}
	return req, opts, nil
}

func runFork(ctx context.Context, o *forkOptions) error {
	req, opts, err := o.request()
	if err != nil {
		return err
	}
	c, err := o.client()
	if err != nil {
		return err
	}
	resp, err := c.ForkCommittedVM(ctx, o.CommitID, req, opts)
	if err != nil {
		return err
	}
	if o.JSON {
		return writeJSON(o.io.Out, resp)
	}
	_, err = fmt.Fprintf(o.io.Out, "VM forked\n  Hostname: %s\n  Commit:   %s (of %s)\n  Status:   %s\n  Persistent: %t\n",
		resp.Hostname, resp.CommitID, resp.SourceHostname, resp.ChildStatus, resp.Persistent)
	return err
}
