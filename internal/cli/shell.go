package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/openslicer/openslicer/client"
)

// heartbeatEvery is how often an idle shell sends a heartbeat frame.
const heartbeatEvery = 30 * time.Second

// shellOptions are the flags of `slicer vm shell NAME`.
type shellOptions struct {
	*globals
	Name     string
	UID, GID *uint32
	Shell    string
	Cwd      string
}

func newShellCmd(g *globals) *cobra.Command {
	o := &shellOptions{globals: g}
	var uid, gid uint32
	cmd := &cobra.Command{
		Use:   "shell NAME",
		Short: "Open an interactive shell in a VM",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Name = args[0]
			o.UID, o.GID = ifChanged(cmd, "uid", &uid), ifChanged(cmd, "gid", &gid)
			return runShell(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.Uint32Var(&uid, "uid", 0, "log in as this user id (default: the guest's non-root user)")
	f.Uint32Var(&gid, "gid", 0, "group id")
	f.StringVar(&o.Shell, "shell", "", "shell to run (default: the user's)")
	f.StringVar(&o.Cwd, "cwd", "", "starting directory")
	return cmd
}

func runShell(ctx context.Context, o *shellOptions) error {
	c, err := o.client()
	if err != nil {
		return err
	}
	var sh *client.ShellConn
	err = withName(ctx, c, o.Name, func(host string) error {
		sh, err = c.Shell(ctx, host, client.ShellOptions{UID: o.UID, GID: o.GID, Shell: o.Shell, Cwd: o.Cwd})
		return err
	})
	if err != nil {
		return err
	}
	defer sh.Close()
	in, _ := o.io.In.(*os.File)
	if in != nil && isTerminal(in) {
		restore, err := makeRaw(in)
		if err != nil {
			return fmt.Errorf("set terminal to raw mode: %w", err)
		}
		defer restore()
	}
	return pumpShell(ctx, sh, o.io.In, in, o.io.Out)
}

// pumpShell connects a session to the terminal: keystrokes from in, output
// to out, resizes of term (when a terminal) and heartbeats, until the
// session ends (piped input that reaches EOF ends it with ^D) or ctx is
// done.
func pumpShell(ctx context.Context, sh *client.ShellConn, in io.Reader, term *os.File, out io.Writer) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if term != nil {
		if cols, rows, ok := termSize(term); ok {
			if err := sh.Resize(ctx, cols, rows); err != nil {
				return err
			}
		}
		resized := make(chan os.Signal, 1)
		defer notifyResize(resized)()
		go func() {
			for {
				select {
				case <-ctx.Done():
					return
				case <-resized:
					if cols, rows, ok := termSize(term); ok {
						_ = sh.Resize(ctx, cols, rows)
					}
				}
			}
		}()
	}
	go func() {
		t := time.NewTicker(heartbeatEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				_ = sh.Heartbeat(ctx)
			}
		}
	}()
	if in != nil {
		go sendInput(ctx, sh, in)
	}
	for {
		b, err := sh.Read(ctx)
		if errors.Is(err, client.ErrSessionClosed) {
			return nil
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		if _, err := out.Write(b); err != nil {
			return err
		}
	}
}

// sendInput forwards in as keystrokes. Piped input ends the way a typed
// session does, with the terminal's end-of-file character (twice after a
// partial line, whose first ^D only flushes it). A shell with line editing
// may switch its terminal mode after the input was queued, and the ^D is
// lost then, so it is sent again every eofRepeat until the session ends
// (ctx is cancelled when the read side returns). A read error asks for a
// shutdown.
func sendInput(ctx context.Context, sh *client.ShellConn, in io.Reader) {
	buf := make([]byte, 32<<10)
	atLineStart := true
	for {
		n, err := in.Read(buf)
		if n > 0 {
			if sh.SendData(ctx, buf[:n]) != nil {
				return
			}
			atLineStart = buf[n-1] == '\n'
		}
		switch {
		case errors.Is(err, io.EOF):
			if !atLineStart {
				_ = sh.SendData(ctx, []byte{ctrlD})
			}
			t := time.NewTicker(eofRepeat)
			defer t.Stop()
			for {
				if sh.SendData(ctx, []byte{ctrlD}) != nil {
					return
				}
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
			}
		case err != nil:
			_ = sh.Shutdown(ctx)
			return
		}
	}
}

// eofRepeat spaces the end-of-file characters sent after piped input.
const eofRepeat = 500 * time.Millisecond

// ctrlD is the terminal's default end-of-file character (VEOF).
const ctrlD = 0x04
