package cli

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/openslicer/openslicer/api"
)

// topOptions are the flags of `vm top`.
type topOptions struct {
	*globals
	Name     string
	Interval time.Duration
}

func newTopCmd(g *globals) *cobra.Command {
	o := &topOptions{globals: g}
	cmd := &cobra.Command{
		Use:   "top [NAME]",
		Short: "Show resource usage of VMs (rates over --interval)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				o.Name = args[0]
			}
			return runTop(cmd.Context(), o)
		},
	}
	cmd.Flags().DurationVar(&o.Interval, "interval", time.Second, "time between the two samples rates are taken from")
	return cmd
}

func runTop(ctx context.Context, o *topOptions) error {
	c, err := o.client()
	if err != nil {
		return err
	}
	first, err := c.Stats(ctx, o.Name)
	if err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(o.Interval):
	}
	second, err := c.Stats(ctx, o.Name)
	if err != nil {
		return err
	}
	writeTop(o.io.Out, first, second, o.Interval)
	return nil
}

// writeTop prints one row per VM of second, with rates of change against
// first. A VM without a snapshot (paused, stopped) shows "-".
func writeTop(w io.Writer, first, second []api.NodeStat, interval time.Duration) {
	before := map[string]*api.Snapshot{}
	for _, s := range first {
		before[s.Hostname] = s.Snapshot
	}
	t := newTable(w, "HOST", "IP", "CPU", "L1", "L5", "L15", "MEM_USED", "MEM_FREE", "DISK_USED%", "DISK_FREE", "NET_RX/s", "NET_TX/s", "DR/s", "DW/s", "UP")
	for _, s := range second {
		n, p := s.Snapshot, before[s.Hostname]
		if n == nil {
			t.row(s.Hostname, s.IP, "-", "-", "-", "-", "-", "-", "-", "-", "-", "-", "-", "-", "-")
			continue
		}
		rate := func(now func(*api.Snapshot) float64) string {
			if p == nil || interval <= 0 {
				return "-"
			}
			return bytesHuman((now(n)-now(p))/interval.Seconds()) + "/s"
		}
		t.row(s.Hostname, s.IP, fmt.Sprint(n.TotalCPUS),
			fmt.Sprintf("%.2f", n.LoadAvg1), fmt.Sprintf("%.2f", n.LoadAvg5), fmt.Sprintf("%.2f", n.LoadAvg15),
			bytesHuman(float64(n.MemoryUsed)), bytesHuman(float64(n.MemoryAvailable)),
			fmt.Sprintf("%.1f%%", n.DiskSpaceUsedPercent), bytesHuman(float64(n.DiskSpaceFree)),
			rate(func(x *api.Snapshot) float64 { return x.NetworkReadTotal }),
			rate(func(x *api.Snapshot) float64 { return x.NetworkWriteTotal }),
			rate(func(x *api.Snapshot) float64 { return x.DiskReadTotal }),
			rate(func(x *api.Snapshot) float64 { return x.DiskWriteTotal }),
			n.Uptime)
	}
	t.flush()
}

// bytesHuman formats a byte count with binary units.
func bytesHuman(b float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for b >= 1024 && i < len(units)-1 {
		b /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%.0f%s", b, units[i])
	}
	return fmt.Sprintf("%.1f%s", b, units[i])
}
