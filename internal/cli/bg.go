package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/client"
)

// bgOptions are the flags and arguments of every `slicer vm bg` command.
type bgOptions struct {
	*globals
	Name, ID  string
	Command   []string
	Cmd       string
	Args      []string
	Shell     string
	UID, GID  *uint32
	Cwd       string
	Env       []string
	RingBytes string
	Follow    bool
	FromID    uint64
	JSON      bool
	Signal    string
	Grace     time.Duration
	Timeout   time.Duration
}

func newBgCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "bg", Short: "Run and manage background commands in a VM", Args: cobra.ArbitraryArgs, RunE: helpOrUnknown}
	cmd.AddCommand(newBgExecCmd(g))
	for _, s := range []struct {
		verb, short string
		withID      bool
		run         func(context.Context, *client.Client, string, *bgOptions) error
	}{
		{"list", "List background commands", false, runBgList},
		{"info", "Describe a background command", true, runBgInfo},
		{"logs", "Print a background command's output", true, runBgLogs},
		{"kill", "Signal a background command (TERM, then KILL after --grace)", true, runBgKill},
		{"wait", "Wait for a background command to exit and exit with its code", true, runBgWait},
		{"remove", "Remove an exited background command and its output", true, runBgRemove},
	} {
		o := &bgOptions{globals: g}
		use, nargs := s.verb+" NAME", 1
		if s.withID {
			use, nargs = s.verb+" NAME EXEC_ID", 2
		}
		sub := &cobra.Command{
			Use: use, Short: s.short, Args: cobra.ExactArgs(nargs),
			RunE: func(cmd *cobra.Command, args []string) error {
				o.Name = args[0]
				if len(args) > 1 {
					o.ID = args[1]
				}
				return runBg(cmd.Context(), o, s.run)
			},
		}
		f := sub.Flags()
		switch s.verb {
		case "list", "info":
			f.BoolVar(&o.JSON, "json", false, "print JSON")
		case "logs":
			f.BoolVarP(&o.Follow, "follow", "f", false, "keep printing until the command exits")
			f.Uint64Var(&o.FromID, "from-id", 0, "start at this frame id")
		case "kill":
			f.StringVar(&o.Signal, "signal", "", "TERM (default), KILL, INT, HUP, QUIT, USR1 or USR2")
			f.DurationVar(&o.Grace, "grace", 0, "time before TERM escalates to KILL (default 5s)")
		case "wait":
			f.DurationVar(&o.Timeout, "timeout", 10*time.Minute, "how long to wait")
		}
		cmd.AddCommand(sub)
	}
	return cmd
}

func newBgExecCmd(g *globals) *cobra.Command {
	o := &bgOptions{globals: g}
	var uid, gid uint32
	cmd := &cobra.Command{
		Use:   "exec NAME [flags] [-- COMMAND [ARGS...]]",
		Short: "Start a command in the background and print its exec_id",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Name, o.Command = args[0], args[1:]
			o.UID, o.GID = ifChanged(cmd, "uid", &uid), ifChanged(cmd, "gid", &gid)
			return runBg(cmd.Context(), o, runBgExec)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.Cmd, "cmd", "c", "", "program to run (instead of the words after --)")
	f.StringArrayVarP(&o.Args, "arg", "a", nil, "argument of --cmd (repeatable)")
	f.StringVarP(&o.Shell, "shell", "s", "", "run the command string through this shell (default: execute directly)")
	f.Uint32Var(&uid, "uid", 0, "run as this user id (default: the guest's non-root user)")
	f.Uint32Var(&gid, "gid", 0, "run with this group id")
	f.StringVar(&o.Cwd, "cwd", "", "working directory in the guest")
	f.StringArrayVar(&o.Env, "env", nil, "environment variable as KEY=VALUE (repeatable)")
	f.StringVar(&o.RingBytes, "ring-bytes", "", "output kept in the guest, e.g. 4M (default 1M)")
	f.BoolVarP(&o.Follow, "follow", "f", false, "print the output until the command exits")
	f.BoolVar(&o.JSON, "json", false, "print the launch response as JSON")
	return cmd
}

// runBg resolves the VM name and runs one bg subcommand.
func runBg(ctx context.Context, o *bgOptions, run func(context.Context, *client.Client, string, *bgOptions) error) error {
	c, err := o.client()
	if err != nil {
		return err
	}
	node, err := findNode(ctx, c, o.Name)
	if err != nil {
		return err
	}
	return run(ctx, c, node.Hostname, o)
}

// parseSize parses a byte count: a plain number, or one with a K, M or G
// suffix (powers of 1024; "KiB", "MB" and the like are accepted too).
func parseSize(s string) (int64, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	t = strings.TrimSuffix(strings.TrimSuffix(t, "B"), "I")
	mult := int64(1)
	if n := len(t); n > 0 {
		switch t[n-1] {
		case 'K':
			mult, t = 1<<10, t[:n-1]
		case 'M':
			mult, t = 1<<20, t[:n-1]
		case 'G':
			mult, t = 1<<30, t[:n-1]
		}
	}
	v, err := strconv.ParseInt(t, 10, 64)
	if err != nil || v < 0 || v > (1<<62)/mult {
		return 0, fmt.Errorf("%w: size %q: want a number of bytes like 4M", api.ErrInvalid, s)
	}
	return v * mult, nil
}

// request builds the launch from --cmd/--arg or the words after NAME.
func (o *bgOptions) request() (*api.ExecRequest, error) {
	req := &api.ExecRequest{UID: o.UID, GID: o.GID, Cwd: o.Cwd, Env: o.Env, Shell: o.Shell}
	words := o.Command
	if o.Cmd != "" {
		if len(words) > 0 {
			return nil, fmt.Errorf("%w: give the command with --cmd or after --, not both", api.ErrInvalid)
		}
		words = append([]string{o.Cmd}, o.Args...)
	}
	if len(words) == 0 {
		return nil, fmt.Errorf("%w: no command: use --cmd or -- COMMAND", api.ErrInvalid)
	}
	if o.Shell != "" {
		req.Command = strings.Join(words, " ")
	} else {
		req.Command, req.Args = words[0], words[1:]
	}
	if o.RingBytes != "" {
		n, err := parseSize(o.RingBytes)
		if err != nil {
			return nil, err
		}
		req.RingBytes = n
	}
	return req, nil
}

func runBgExec(ctx context.Context, c *client.Client, host string, o *bgOptions) error {
	req, err := o.request()
	if err != nil {
		return err
	}
	res, err := c.ExecBackground(ctx, host, req)
	if err != nil {
		return err
	}
	if o.JSON {
		if err := writeJSON(o.io.Out, res); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(o.io.Out, "exec_id=%s pid=%d\n", res.ExecID, res.PID)
	}
	if !o.Follow {
		return nil
	}
	o.ID = res.ExecID
	return runBgLogs(ctx, c, host, o)
}

func runBgList(ctx context.Context, c *client.Client, host string, o *bgOptions) error {
	list, err := c.ExecList(ctx, host)
	if err != nil {
		return err
	}
	if o.JSON {
		return writeJSON(o.io.Out, list)
	}
	t := newTable(o.io.Out, "EXEC_ID", "PID", "STATUS", "STARTED", "COMMAND")
	for _, e := range list {
		t.row(e.ExecID, strconv.Itoa(e.PID), bgStatus(e), formatTime(e.StartedAt, o.loc), strings.Join(append([]string{e.Command}, e.Args...), " "))
	}
	return t.flush()
}

// bgStatus is "running", "exited N" or "killed SIG".
func bgStatus(e api.ExecBackgroundInfo) string {
	switch {
	case e.Running:
		return "running"
	case e.Signal != "":
		return "killed " + e.Signal
	case e.ExitCode != nil:
		return "exited " + strconv.Itoa(*e.ExitCode)
	}
	return "exited"
}

func runBgInfo(ctx context.Context, c *client.Client, host string, o *bgOptions) error {
	info, err := c.ExecInfo(ctx, host, o.ID)
	if err != nil {
		return err
	}
	return writeJSON(o.io.Out, info)
}

func runBgLogs(ctx context.Context, c *client.Client, host string, o *bgOptions) error {
	stream, err := c.ExecLogs(ctx, host, o.ID, client.ExecLogsOptions{Follow: o.Follow, FromID: o.FromID})
	if err != nil {
		return err
	}
	defer stream.Close()
	return copyLogs(stream, o.io.Out, o.io.Err)
}

// copyLogs prints the output frames of a log stream, and a note on stderr
// for each gap where the guest's ring buffer dropped output.
func copyLogs(stream *client.ExecStream, stdout, stderr io.Writer) error {
	for {
		f, err := stream.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if f.Type == api.FrameGap {
			fmt.Fprintf(stderr, "slicer: output dropped: %d bytes in %d frames %s\n", f.DroppedBytes, f.DroppedFrames, f.Message)
			continue
		}
		if f.Error != "" {
			return fmt.Errorf("background command: %s", f.Error)
		}
		text := firstNonEmpty(f.Data, f.Stdout, f.Stderr)
		b, err := client.DecodeOutput(f.Encoding, text)
		if err != nil {
			return err
		}
		w := stdout
		if f.Type == api.FrameStderr {
			w = stderr
		}
		if f.Type == api.FrameStdout || f.Type == api.FrameStderr || f.Type == "" {
			if _, err := w.Write(b); err != nil {
				return err
			}
		}
	}
}

func runBgKill(ctx context.Context, c *client.Client, host string, o *bgOptions) error {
	res, err := c.ExecKill(ctx, host, o.ID, api.ExecKillRequest{Signal: o.Signal, GraceMs: int(o.Grace / time.Millisecond)})
	if err != nil {
		return err
	}
	fmt.Fprintf(o.io.Out, "exec_id=%s signal_sent=%s running=%t\n", res.ExecID, res.SignalSent, res.Running)
	return nil
}

// maxWait is the longest single wait-exit call the daemon allows.
const maxWait = 600 * time.Second

func runBgWait(ctx context.Context, c *client.Client, host string, o *bgOptions) error {
	deadline := time.Now().Add(o.Timeout)
	for {
		wait := min(time.Until(deadline), maxWait)
		wait = max(wait, time.Second)
		res, err := c.ExecWaitExit(ctx, host, o.ID, wait)
		if err != nil {
			return err
		}
		if !res.Running {
			code := 0
			if res.ExitCode != nil {
				code = *res.ExitCode
			}
			fmt.Fprintf(o.io.Out, "exec_id=%s exit_code=%d%s\n", res.ExecID, code, signalSuffix(res.Signal))
			if code != 0 {
				return &ExitCodeError{Code: code}
			}
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: %s still running after %s", api.ErrTimeout, o.ID, o.Timeout)
		}
	}
}

func signalSuffix(sig string) string {
	if sig == "" {
		return ""
	}
	return " signal=" + sig
}

func runBgRemove(ctx context.Context, c *client.Client, host string, o *bgOptions) error {
	res, err := c.ExecDelete(ctx, host, o.ID)
	if err != nil {
		return err
	}
	fmt.Fprintf(o.io.Out, "exec_id=%s removed\n", res.ExecID)
	return nil
}
