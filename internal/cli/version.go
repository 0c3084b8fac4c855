package cli

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/openslicer/openslicer/api"
)

// commitAnnotation holds the build's commit on the root command.
const commitAnnotation = "commit"

// SetBuild records the version and commit this binary was built from on
// root, for `slicer version` and `slicer info`.
func SetBuild(root *cobra.Command, version, commit string) {
	root.Version = version
	if root.Annotations == nil {
		root.Annotations = map[string]string{}
	}
	root.Annotations[commitAnnotation] = commit
}

// versionTimeout bounds the question to the daemon: `slicer version` must
// answer even when the daemon's address leads nowhere.
const versionTimeout = 5 * time.Second

// versionOptions are the flags of `slicer version`.
type versionOptions struct {
	*globals
	ClientVersion, ClientCommit string
}

func newVersionCmd(g *globals, runF func(context.Context, *versionOptions) error) *cobra.Command {
	o := &versionOptions{globals: g}
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the client's version, and the daemon's when it answers",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.ClientVersion = firstNonEmpty(cmd.Root().Version, "dev")
			o.ClientCommit = cmd.Root().Annotations[commitAnnotation]
			if runF != nil {
				return runF(cmd.Context(), o)
			}
			return runVersion(cmd.Context(), o)
		},
	}
	addConnFlags(cmd, &g.conn)
	return cmd
}

// runVersion prints the client's version, then the daemon's; a daemon that
// cannot be asked is a line of output, not an error.
func runVersion(ctx context.Context, o *versionOptions) error {
	c, err := o.client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, versionTimeout)
	defer cancel()
	info, err := c.Info(ctx)
	return writeVersion(o.io.Out, o.ClientVersion, o.ClientCommit, info, err)
}

// writeVersion prints what `slicer info` prints, the client's commit
// included, or says why the daemon could not be asked.
func writeVersion(w io.Writer, version, commit string, info *api.Info, infoErr error) error {
	client := version
	if commit != "" {
		client += " (" + commit + ")"
	}
	if infoErr == nil {
		return writeInfo(w, client, info)
	}
	_, err := fmt.Fprintf(w, "Client version:  %s\nServer:          not available (%v)\n", client, infoErr)
	return err
}
