package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"

	"github.com/spf13/cobra"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/client"
)

// forwardOptions are the flags of `slicer vm forward NAME -L SPEC...`.
type forwardOptions struct {
	*globals
	Name  string
	Specs []string
	ready func(addrs []net.Addr) // tests: called once every listener is open
}

func newForwardCmd(g *globals) *cobra.Command {
	o := &forwardOptions{globals: g}
	cmd := &cobra.Command{
		Use:     "forward NAME -L SPEC [-L SPEC...]",
		Aliases: []string{"port-forward"},
		Short:   "Forward local TCP ports or unix sockets to ports or sockets in a VM",
		Long: "Forward local ports or sockets into a VM until interrupted. SPEC is one of:\n" +
			"  127.0.0.1:9000                       listen on 127.0.0.1:9000, to 127.0.0.1:9000 in the VM\n" +
			"  9001:127.0.0.1:9000                  listen on 0.0.0.0:9001\n" +
			"  0:127.0.0.1:9000                     listen on a random port\n" +
			"  0.0.0.0:9000:127.0.0.1:9000          listen on 0.0.0.0:9000\n" +
			"  127.0.0.1:9000:/var/run/docker.sock  a TCP port to a unix socket in the VM\n" +
			"  9000:/var/run/docker.sock            likewise, on 0.0.0.0:9000\n" +
			"  /tmp/d.sock:/var/run/docker.sock     a local unix socket (mode 0660)\n" +
			"Specs may also follow NAME as arguments.",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Name = args[0]
			o.Specs = append(o.Specs, args[1:]...)
			return runForward(cmd.Context(), o)
		},
	}
	cmd.Flags().StringArrayVarP(&o.Specs, "local", "L", nil, "forward spec (repeatable)")
	return cmd
}

func runForward(ctx context.Context, o *forwardOptions) error {
	if len(o.Specs) == 0 {
		return fmt.Errorf("%w: give at least one -L SPEC", api.ErrInvalid)
	}
	specs := make([]client.ForwardSpec, len(o.Specs))
	for i, s := range o.Specs {
		var err error
		if specs[i], err = client.ParseForwardSpec(s); err != nil {
			return err
		}
	}
	c, err := o.client()
	if err != nil {
		return err
	}
	node, err := findNode(ctx, c, o.Name)
	if err != nil {
		return err
	}
	lns := make([]net.Listener, 0, len(specs))
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	addrs := make([]net.Addr, 0, len(specs))
	for _, s := range specs {
		ln, err := client.ListenForward(ctx, s)
		if err != nil {
			return err
		}
		lns = append(lns, ln)
		addrs = append(addrs, ln.Addr())
		fmt.Fprintf(o.io.Out, "Forwarding %s -> %s:%s\n", ln.Addr(), node.Hostname, s.Upstream)
	}
	if o.ready != nil {
		o.ready(addrs)
	}
	log := slog.New(slog.NewTextHandler(o.io.Err, nil))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, len(lns))
	for i, ln := range lns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if errs[i] = c.Forward(ctx, log, node.Hostname, ln, specs[i].Upstream); errs[i] != nil {
				cancel()
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return ctx.Err()
}
