package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/client"
)

// execOptions are the flags and arguments of `slicer vm exec`.
type execOptions struct {
	*globals
	Name    string
	Command []string
	UID     *uint32 // nil: the guest's default user
	GID     *uint32
	Cwd     string
	Env     []string
	Shell   string
	NoStdin bool
}

func newExecCmd(g *globals, runF func(context.Context, *execOptions) error) *cobra.Command {
	o := &execOptions{globals: g}
	var uid, gid uint32
	cmd := &cobra.Command{
		Use:   "exec NAME [flags] -- COMMAND [ARGS...]",
		Short: "Run a command in a VM and exit with its exit code",
		Long: "Run a command in a VM, streaming its output. Stdin is sent to the command when it\n" +
			"is not a terminal. Without --shell the command is executed directly; with --shell\n" +
			"the words are joined into one command string for that shell.",
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Name, o.Command = args[0], args[1:]
			o.UID, o.GID = ifChanged(cmd, "uid", &uid), ifChanged(cmd, "gid", &gid)
			if runF != nil {
				return runF(cmd.Context(), o)
			}
			return runExec(cmd.Context(), o)
		},
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return fmt.Errorf("%w (a command with flags goes after --: slicer vm exec NAME -- ls -l)", err)
	})
	f := cmd.Flags()
	f.Uint32Var(&uid, "uid", 0, "run as this user id (default: the guest's non-root user)")
	f.Uint32Var(&gid, "gid", 0, "run with this group id")
	f.StringVar(&o.Cwd, "cwd", "", "working directory in the guest")
	f.StringArrayVar(&o.Env, "env", nil, "environment variable as KEY=VALUE (repeatable)")
	f.StringVar(&o.Shell, "shell", "", `run the command through this shell, e.g. /bin/bash (default "": execute directly)`)
	f.BoolVar(&o.NoStdin, "no-stdin", false, "never send stdin, even when it is not a terminal")
	return cmd
}

// request builds the exec call. Output is asked for as base64 so binary
// output survives the JSON frames.
func (o *execOptions) request(stdin bool) *api.ExecRequest {
	req := &api.ExecRequest{
		UID:   o.UID,
		GID:   o.GID,
		Cwd:   o.Cwd,
		Env:   o.Env,
		Stdio: api.StdioBase64,
		Stdin: stdin,
	}
	if o.Shell != "" {
		req.Shell = o.Shell
		req.Command = strings.Join(o.Command, " ")
	} else {
		req.Command, req.Args = o.Command[0], o.Command[1:]
	}
	return req
}

// stdin returns the reader to send as the command's stdin: the CLI's input,
// unless it is a terminal (or --no-stdin).
func (o *execOptions) stdin() io.Reader {
	if o.NoStdin || o.io.In == nil {
		return nil
	}
	if f, ok := o.io.In.(*os.File); ok && isTerminal(f) {
		return nil
	}
	return o.io.In
}

func runExec(ctx context.Context, o *execOptions) error {
	c, err := o.client()
	if err != nil {
		return err
	}
	stdin := o.stdin()
	req := o.request(stdin != nil)
	var stream *client.ExecStream
	if stdin != nil {
		// Resolve the name first: a retry after a 404 could lose stdin the
		// first attempt had already consumed.
		node, err := findNode(ctx, c, o.Name)
		if err != nil {
			return err
		}
		stream, err = c.Exec(ctx, node.Hostname, req, stdin)
		if err != nil {
			return err
		}
	} else {
		err = withName(ctx, c, o.Name, func(h string) error {
			stream, err = c.Exec(ctx, h, req, nil)
			return err
		})
		if err != nil {
			return err
		}
	}
	defer stream.Close()

	code, err := stream.Copy(o.io.Out, o.io.Err)
	var frameErr *client.FrameError
	if errors.As(err, &frameErr) {
		fmt.Fprintf(o.io.Err, "slicer: %s\n", frameErr.Message)
		return &ExitCodeError{Code: code}
	}
	if err != nil {
		return err
	}
	if code != 0 {
		return &ExitCodeError{Code: code}
	}
	return nil
}
