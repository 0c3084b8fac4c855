package cli

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/client"
)

// cpOptions are the flags and arguments of `slicer vm cp SRC DST`.
type cpOptions struct {
	*globals
	Src, Dst    string
	Recursive   bool
	Mode        string
	UID, GID    *uint32
	Permissions string
	Exclude     []string
}

func newCpCmd(g *globals, runF func(context.Context, *cpOptions) error) *cobra.Command {
	o := &cpOptions{globals: g}
	var uid, gid uint32
	cmd := &cobra.Command{
		Use:   "cp SRC DST",
		Short: "Copy files between the host and a VM (one side is VM:PATH)",
		Long: "Copy a file, or with -r a directory, between the host and a VM. Exactly one side is\n" +
			"written VM:PATH. Like cp(1), copying into an existing directory keeps the source's\n" +
			"name; a source ending in /. copies a directory's contents.",
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Src, o.Dst = args[0], args[1]
			o.UID, o.GID = ifChanged(cmd, "uid", &uid), ifChanged(cmd, "gid", &gid)
			if runF != nil {
				return runF(cmd.Context(), o)
			}
			return runCp(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&o.Recursive, "recursive", "r", false, "copy directories (as a tar stream)")
	f.StringVar(&o.Mode, "mode", "", "binary (a file) or tar (a directory); default: from the source")
	f.Uint32Var(&uid, "uid", 0, "owner of what is written (default in the VM: its non-root user)")
	f.Uint32Var(&gid, "gid", 0, "group of what is written")
	f.StringVar(&o.Permissions, "permissions", "", "octal mode of what is written, e.g. 0644")
	f.StringArrayVar(&o.Exclude, "exclude", nil, "glob of paths to leave out of a directory copy (repeatable)")
	return cmd
}

// cpPlan is which way a copy goes.
type cpPlan struct {
	Upload bool
	VM     string
	Remote string
	Local  string
}

// remoteSide splits "VM:path". A colon after a slash, or a leading one, is
// part of a local path.
func remoteSide(arg string) (vm, path string, ok bool) {
	i := strings.IndexByte(arg, ':')
	if i <= 0 || strings.ContainsRune(arg[:i], '/') {
		return "", "", false
	}
	return arg[:i], arg[i+1:], true
}

// planCp decides the direction of a copy from its two arguments.
func planCp(src, dst string) (cpPlan, error) {
	svm, spath, sRemote := remoteSide(src)
	dvm, dpath, dRemote := remoteSide(dst)
	switch {
	case sRemote && dRemote:
		return cpPlan{}, fmt.Errorf("%w: both %q and %q name a VM; copy through the host", api.ErrInvalid, src, dst)
	case !sRemote && !dRemote:
		return cpPlan{}, fmt.Errorf("%w: one side must be VM:PATH", api.ErrInvalid)
	case dRemote:
		if dpath == "" {
			return cpPlan{}, fmt.Errorf("%w: %q has no path in the VM", api.ErrInvalid, dst)
		}
		return cpPlan{Upload: true, VM: dvm, Remote: dpath, Local: src}, nil
	}
	if spath == "" {
		return cpPlan{}, fmt.Errorf("%w: %q has no path in the VM", api.ErrInvalid, src)
	}
	return cpPlan{VM: svm, Remote: spath, Local: dst}, nil
}

func (o *cpOptions) copyOptions() (client.CopyOptions, error) {
	opts := client.CopyOptions{
		Recursive: o.Recursive, UID: o.UID, GID: o.GID,
		Permissions: o.Permissions, Exclude: o.Exclude,
	}
	switch o.Mode {
	case "", "binary":
	case "tar":
		opts.Tar = true
	default:
		return opts, fmt.Errorf("%w: --mode %q: want binary or tar", api.ErrInvalid, o.Mode)
	}
	if o.Permissions != "" {
		if _, err := client.ParseMode(o.Permissions); err != nil {
			return opts, err
		}
	}
	return opts, nil
}

func runCp(ctx context.Context, o *cpOptions) error {
	plan, err := planCp(o.Src, o.Dst)
	if err != nil {
		return err
	}
	opts, err := o.copyOptions()
	if err != nil {
		return err
	}
	c, err := o.client()
	if err != nil {
		return err
	}
	return withName(ctx, c, plan.VM, func(host string) error {
		if plan.Upload {
			return c.CpToVM(ctx, host, plan.Local, plan.Remote, opts)
		}
		return c.CpFromVM(ctx, host, plan.Remote, plan.Local, opts)
	})
}
