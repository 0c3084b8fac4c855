package cli

import (
	"context"
	"strings"

	"github.com/spf13/cobra"

	"github.com/openslicer/openslicer/api"
)

// tagOptions are the flags of `vm tag list|add|remove|replace NAME`.
type tagOptions struct {
	*globals
	Name string
	Tags []string
}

func newTagCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "tag", Short: "List or change a VM's tags", Args: cobra.ArbitraryArgs, RunE: helpOrUnknown}
	for _, verb := range []string{"list", "add", "remove", "replace"} {
		o := &tagOptions{globals: g}
		sub := &cobra.Command{
			Use:   verb + " NAME",
			Short: strings.ToUpper(verb[:1]) + verb[1:] + " tags",
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				o.Name = args[0]
				return runTag(cmd.Context(), verb, o)
			},
		}
		if verb != "list" {
			sub.Flags().StringArrayVar(&o.Tags, "tag", nil, "tag, e.g. role=db (repeatable)")
		}
		cmd.AddCommand(sub)
	}
	return cmd
}

func runTag(ctx context.Context, verb string, o *tagOptions) error {
	c, err := o.client()
	if err != nil {
		return err
	}
	var tags *api.VMTags
	err = withName(ctx, c, o.Name, func(host string) error {
		var u api.VMTagUpdate
		switch verb {
		case "list":
			tags, err = c.Tags(ctx, host)
			return err
		case "add":
			u.Add = o.Tags
		case "remove":
			u.Remove = o.Tags
		case "replace":
			replace := append([]string{}, o.Tags...)
			u.Replace = &replace
		}
		tags, err = c.UpdateTags(ctx, host, u)
		return err
	})
	if err != nil {
		return err
	}
	for _, t := range tags.Tags {
		if _, err := o.io.Out.Write([]byte(t + "\n")); err != nil {
			return err
		}
	}
	return nil
}
