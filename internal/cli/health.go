package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/openslicer/openslicer/api"
)

// logsOptions are the flags of `slicer vm logs`.
type logsOptions struct {
	*globals
	Name  string
	Lines int
}

func newLogsCmd(g *globals, runF func(context.Context, *logsOptions) error) *cobra.Command {
	o := &logsOptions{globals: g}
	cmd := &cobra.Command{
		Use:   "logs NAME",
		Short: "Print the tail of a VM's serial console log",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Name = args[0]
			if runF != nil {
				return runF(cmd.Context(), o)
			}
			return runLogs(cmd.Context(), o)
		},
	}
	cmd.Flags().IntVar(&o.Lines, "lines", 20, "lines to print (0: the whole log)")
	return cmd
}

func runLogs(ctx context.Context, o *logsOptions) error {
	c, err := o.client()
	if err != nil {
		return err
	}
	var logs *api.LogsResponse
	err = withName(ctx, c, o.Name, func(h string) error {
		logs, err = c.Logs(ctx, h, o.Lines)
		return err
	})
	if err != nil {
		return err
	}
	content := logs.Content
	if content != "" && !strings.HasSuffix(content, "\n") {
		content += "\n"
	}
	_, err = io.WriteString(o.io.Out, content)
	return err
}

// healthOptions are the flags of `slicer vm health`.
type healthOptions struct {
	*globals
	Name string
	JSON bool
}

func newHealthCmd(g *globals, runF func(context.Context, *healthOptions) error) *cobra.Command {
	o := &healthOptions{globals: g}
	cmd := &cobra.Command{
		Use:   "health NAME",
		Short: "Show the health of a VM's guest agent",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Name = args[0]
			if runF != nil {
				return runF(cmd.Context(), o)
			}
			return runHealth(cmd.Context(), o)
		},
	}
	cmd.Flags().BoolVar(&o.JSON, "json", false, "print JSON")
	return cmd
}

func runHealth(ctx context.Context, o *healthOptions) error {
	c, err := o.client()
	if err != nil {
		return err
	}
	var h *api.AgentHealthResponse
	err = withName(ctx, c, o.Name, func(host string) error {
		h, err = c.Health(ctx, host)
		return err
	})
	if err != nil {
		return err
	}
	if o.JSON {
		return writeJSON(o.io.Out, h)
	}
	return writeHealth(o.io.Out, h)
}

func writeHealth(w io.Writer, h *api.AgentHealthResponse) error {
	userdata := "not run"
	switch {
	case h.UserdataRan && h.UserdataExitCode != nil:
		userdata = fmt.Sprintf("ran, exit code %d", *h.UserdataExitCode)
	case h.UserdataRan:
		userdata = "ran"
	}
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	for _, kv := range [][2]string{
		{"Hostname:", h.Hostname},
		{"IP:", h.IP},
		{"Agent version:", h.AgentVersion},
		{"Agent uptime:", formatUptime(h.AgentUptime)},
		{"System uptime:", formatUptime(h.SystemUptime)},
		{"Userdata:", userdata},
	} {
		fmt.Fprintf(tw, "%s\t%s\n", kv[0], firstNonEmpty(kv[1], "-"))
	}
	return tw.Flush()
}
