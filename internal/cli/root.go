// Package cli holds the `slicer` command-line client: cobra commands that
// drive a daemon over the REST API through package client. The daemon-side
// commands (up, new, image, ...) are added to the root by cmd/slicer.
//
// Each command is an options struct plus a run function; output goes to the
// IO given to NewRoot, and the process exit code is decided in Main.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/openslicer/openslicer/client"
)

// DefaultTokenFile is where a daemon with auth enabled writes its token. The
// CLI uses it when no token is given and the file is readable.
const DefaultTokenFile = "/var/lib/slicer/auth/token"

// userAgent is what the CLI sends as User-Agent.
const userAgent = "slicer-cli"

// IO is where commands read and write.
type IO struct {
	In       io.Reader
	Out, Err io.Writer
}

// ExitCodeError asks Main to exit with Code without printing anything; vm
// exec returns it to pass on the remote command's exit code.
type ExitCodeError struct {
	Code int
}

func (e *ExitCodeError) Error() string { return fmt.Sprintf("exit status %d", e.Code) }

// globals is what every command shares: its IO, the connection flags, and
// the process environment (replaced in tests).
type globals struct {
	io               IO
	conn             connOptions
	getenv           func(string) string
	defaultTokenFile string
	loc              *time.Location // for printed times
}

// NewRoot returns the `slicer` root command with every API-side command.
func NewRoot(io IO) *cobra.Command {
	return newRoot(&globals{io: io, getenv: os.Getenv, defaultTokenFile: DefaultTokenFile, loc: time.Local})
}

func newRoot(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:           "slicer",
		Short:         "Run and drive microVM sandboxes",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(g.io.In)
	root.SetOut(g.io.Out)
	root.SetErr(g.io.Err)

	ls := newListCmd(g, nil)
	ls.Use, ls.Aliases = "ls [GROUP]", nil
	ls.Short = "List VMs (same as vm list)"
	addConnFlags(ls, &g.conn)

	root.AddCommand(newVMCmd(g), ls, newInfoCmd(g, nil), newVersionCmd(g, nil), newSecretCmd(g), newDaemonCmd(g, nil))
	// Shortcuts: slicer cp, shell, bg and logs are the vm commands.
	for _, sc := range []*cobra.Command{newCpCmd(g, nil), newShellCmd(g), newBgCmd(g), newLogsCmd(g, nil)} {
		sc.Short += " (same as vm " + sc.Name() + ")"
		addConnFlags(sc, &g.conn)
		root.AddCommand(sc)
	}
	return root
}

// newVMCmd returns `slicer vm` with its subcommands.
func newVMCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "vm",
		Aliases: []string{"v"},
		Short:   "Launch, list and operate VMs",
		Args:    cobra.ArbitraryArgs,
		RunE:    helpOrUnknown,
	}
	addConnFlags(cmd, &g.conn)
	cmd.AddCommand(
		newAddCmd(g, nil),
		newListCmd(g, nil),
		newGroupCmd(g, nil),
		newDeleteCmd(g, nil),
		newExecCmd(g, nil),
		newLogsCmd(g, nil),
		newHealthCmd(g, nil),
		newReadyCmd(g, nil),
		newTopCmd(g),
		newTagCmd(g),
		newCpCmd(g, nil),
		newBgCmd(g),
		newShellCmd(g),
		newForwardCmd(g),
		newCommitCmd(g),
		newForkCmd(g, nil),
	)
	cmd.AddCommand(newLifecycleCmds(g)...)
	return cmd
}

// helpOrUnknown is the run function of a command that only groups others:
// without arguments it prints help, with one it reports an unknown command
// (cobra only does that itself for the root).
func helpOrUnknown(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("unknown command %q for %q", args[0], cmd.CommandPath())
	}
	return cmd.Help()
}

// Main runs root with the process's arguments and returns the exit code:
// 0 on success, the code of an *ExitCodeError as is, 130 after an
// interrupt, and 1 (with "slicer: <err>" on io.Err) for any other error.
func Main(root *cobra.Command, io IO) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := root.ExecuteContext(ctx)
	return exitCode(ctx, err, io.Err)
}

func exitCode(ctx context.Context, err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	var exit *ExitCodeError
	if errors.As(err, &exit) {
		return exit.Code
	}
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		return 130
	}
	fmt.Fprintf(stderr, "slicer: %v\n", err)
	return 1
}

// connOptions are the connection flags of every API command.
type connOptions struct {
	URL       string
	Token     string
	TokenFile string
}

func addConnFlags(cmd *cobra.Command, o *connOptions) {
	f := cmd.PersistentFlags()
	f.StringVar(&o.URL, "url", "", "API URL or unix socket path (env SLICER_URL, default "+client.DefaultURL+")")
	f.StringVar(&o.Token, "token", "", "API bearer token (env SLICER_TOKEN)")
	f.StringVar(&o.TokenFile, "token-file", "", "file holding the API token (env SLICER_TOKEN_FILE, default "+DefaultTokenFile+" when readable)")
}

// client returns an API client for the connection flags, falling back to
// the environment and then the defaults.
func (g *globals) client() (*client.Client, error) {
	url, token, err := resolveConn(g.conn, g.getenv, g.defaultTokenFile)
	if err != nil {
		return nil, err
	}
	c := client.New(url, token)
	c.UserAgent = userAgent
	return c, nil
}

// resolveConn picks the URL and token: flags first, then SLICER_URL,
// SLICER_TOKEN and SLICER_TOKEN_FILE, then the defaults. An explicit token
// file that cannot be read is an error; the default one is skipped.
func resolveConn(o connOptions, getenv func(string) string, defaultTokenFile string) (url, token string, err error) {
	url = firstNonEmpty(o.URL, getenv("SLICER_URL"), client.DefaultURL)
	switch {
	case o.Token != "":
		return url, o.Token, nil
	case o.TokenFile != "":
		token, err = client.ReadTokenFile(o.TokenFile)
		return url, token, err
	case getenv("SLICER_TOKEN") != "":
		return url, getenv("SLICER_TOKEN"), nil
	case getenv("SLICER_TOKEN_FILE") != "":
		token, err = client.ReadTokenFile(getenv("SLICER_TOKEN_FILE"))
		return url, token, err
	case defaultTokenFile != "":
		if t, err := client.ReadTokenFile(defaultTokenFile); err == nil {
			return url, t, nil
		}
	}
	return url, "", nil
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// ifChanged returns v when the flag name was given on the command line and
// nil otherwise, for options where omitted and zero mean different things
// (uid/gid: omitted is the guest's default user, 0 is root).
func ifChanged(cmd *cobra.Command, name string, v *uint32) *uint32 {
	if cmd.Flags().Changed(name) {
		return v
	}
	return nil
}
