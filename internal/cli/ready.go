package cli

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/spf13/cobra"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/client"
)

// readyOptions are the flags of `slicer vm ready`.
type readyOptions struct {
	*globals
	Name     string
	Agent    bool // the default: the agent answers
	Userdata bool // the first-boot userdata has run
	Timeout  time.Duration
	Interval time.Duration
}

func newReadyCmd(g *globals, runF func(context.Context, *readyOptions) error) *cobra.Command {
	o := &readyOptions{globals: g}
	cmd := &cobra.Command{
		Use:   "ready NAME",
		Short: "Wait until a VM's agent answers (or, with --userdata, its userdata has run)",
		Long: "Poll the VM's health until it is ready: exit 0 then, or 1 with the reason\n" +
			"when --timeout passes first. The daemon being unreachable, or the VM not being\n" +
			"up yet or paused, count as not ready; an unknown VM or a refused token end the wait.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Name = args[0]
			if o.Timeout <= 0 || o.Interval <= 0 {
				return fmt.Errorf("--timeout and --interval must be positive (got %s, %s)", o.Timeout, o.Interval)
			}
			if runF != nil {
				return runF(cmd.Context(), o)
			}
			return runReady(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.Agent, "agent", true, "wait for the guest agent (the default)")
	f.BoolVar(&o.Userdata, "userdata", false, "wait until the VM's userdata has run")
	f.DurationVar(&o.Timeout, "timeout", 5*time.Minute, "give up after this long")
	f.DurationVar(&o.Interval, "interval", 100*time.Millisecond, "time between health checks")
	cmd.MarkFlagsMutuallyExclusive("agent", "userdata")
	return cmd
}

// readiness is one health check's answer: ready, or not yet and why.
type readiness struct {
	ready bool
	why   error                    // not ready: the last transient failure, if any
	h     *api.AgentHealthResponse // with --userdata, when ready
}

func runReady(ctx context.Context, o *readyOptions) error {
	c, err := o.client()
	if err != nil {
		return err
	}
	what := "agent"
	if o.Userdata {
		what = "userdata"
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	host := o.Name
	var last error
	for {
		var r readiness
		err := withName(ctx, c, host, func(h string) error {
			var err error
			r, err = checkReady(ctx, c, h, o.Userdata)
			if err == nil {
				host = h
			}
			return err
		})
		switch {
		case err != nil && ctx.Err() == nil:
			return fmt.Errorf("vm %s: %w", o.Name, err)
		case r.ready:
			return writeReady(o, host, r.h)
		case r.why != nil && ctx.Err() == nil: // not the deadline cutting a request short
			last = r.why
		}
		t := time.NewTimer(o.Interval)
		select {
		case <-ctx.Done():
			t.Stop()
			if parent := context.Cause(ctx); errors.Is(parent, context.Canceled) {
				return parent
			}
			msg := fmt.Sprintf("vm %s: %s not ready within %s", o.Name, what, o.Timeout)
			if last != nil {
				msg += fmt.Sprintf(" (last: %v)", last)
			}
			return errors.New(msg)
		case <-t.C:
		}
	}
}

// checkReady asks the VM's health once (GET, whose error answers say why
// the VM is not ready). A VM that is not up yet, or paused (5xx, 409), and
// a daemon that cannot be reached are "not yet"; any other API error
// (unknown VM, bad token) is returned.
func checkReady(ctx context.Context, c *client.Client, host string, userdata bool) (readiness, error) {
	h, err := c.Health(ctx, host)
	switch {
	case err != nil && !transient(err):
		return readiness{}, err
	case err != nil:
		return readiness{why: err}, nil
	case !userdata:
		return readiness{ready: true}, nil
	case !h.UserdataRan:
		return readiness{why: errors.New("the agent answers; userdata has not finished")}, nil
	}
	return readiness{ready: true, h: h}, nil
}

// transient reports whether err may pass by itself: a 5xx or 409 from the
// daemon, or no answer from it at all.
func transient(err error) bool {
	var apiErr *api.Error
	if errors.As(err, &apiErr) {
		return apiErr.StatusCode >= 500 || apiErr.StatusCode == http.StatusConflict
	}
	return true
}

func writeReady(o *readyOptions, host string, h *api.AgentHealthResponse) error {
	if h == nil {
		_, err := fmt.Fprintf(o.io.Out, "%s: agent ready\n", host)
		return err
	}
	code := "unknown"
	if h.UserdataExitCode != nil {
		code = fmt.Sprint(*h.UserdataExitCode)
	}
	_, err := fmt.Fprintf(o.io.Out, "%s: userdata ran (exit code %s)\n", host, code)
	return err
}
