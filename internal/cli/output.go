package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/openslicer/openslicer/api"
)

const (
	mib = 1 << 20
	gib = 1 << 30
)

// listTimeLayout is how tables print times.
const listTimeLayout = "2006-01-02 15:04:05"

// writeJSON prints v as indented JSON.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// table writes aligned columns with a header line and a dashes line.
type table struct {
	tw *tabwriter.Writer
}

func newTable(w io.Writer, header ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
	dashes := make([]string, len(header))
	for i, h := range header {
		dashes[i] = strings.Repeat("-", len(h))
	}
	t.row(header...)
	t.row(dashes...)
	return t
}

// row adds one line; empty cells print as "-".
func (t *table) row(cells ...string) {
	for i, c := range cells {
		if c == "" {
			cells[i] = "-"
		}
	}
	fmt.Fprintln(t.tw, strings.Join(cells, "\t"))
}

func (t *table) flush() error { return t.tw.Flush() }

// writeNodeTable prints VMs as the `vm list` table.
func writeNodeTable(w io.Writer, nodes []api.Node, loc *time.Location) error {
	t := newTable(w, "HOSTNAME", "IP", "RAM", "CPUS", "STATUS", "CREATED", "TAGS")
	for _, n := range nodes {
		t.row(n.Hostname, n.IP, formatIEC(n.RamBytes), count(n.CPUs), nodeStatus(n),
			formatTime(n.CreatedAt, loc), strings.Join(n.Tags, ","))
	}
	return t.flush()
}

// nodeStatus is the status column: Slicer's status, with OpenSlicer's finer
// state beside it where the two differ ("Paused (suspended)").
func nodeStatus(n api.Node) string {
	if n.State == "" || strings.EqualFold(n.State, n.Status) {
		return n.Status
	}
	return n.Status + " (" + n.State + ")"
}

// writeGroupTable prints host groups as the `vm group` table.
func writeGroupTable(w io.Writer, groups []api.HostGroup) error {
	t := newTable(w, "NAME", "COUNT", "RAM", "CPUS", "GPUS", "ARCH")
	for _, g := range groups {
		t.row(g.Name, strconv.Itoa(g.Count), formatIEC(g.RamBytes), count(g.CPUs), strconv.Itoa(g.GPUCount), g.Arch)
	}
	return t.flush()
}

// writeCreated prints the human summary of a new VM.
func writeCreated(w io.Writer, resp *api.CreateNodeResponse, group string, cpus int, ramBytes int64, gpus int) error {
	_, err := fmt.Fprintf(w, "VM created\n"+
		"  Hostname: %s\n"+
		"  Group:    %s\n"+
		"  IP:       %s\n"+
		"  Specs:    %s\n"+
		"  Persistent: %t\n"+
		"  Created:  %s\n",
		resp.Hostname, group, resp.IP, formatSpecs(cpus, ramBytes, gpus),
		resp.Persistent, resp.CreatedAt.Format(time.RFC3339))
	return err
}

// formatSpecs renders "1 vCPU, 2GB RAM, GPUs: 0"; unknown values print as ?.
func formatSpecs(cpus int, ramBytes int64, gpus int) string {
	c, unit := "?", "vCPUs"
	if cpus > 0 {
		c = strconv.Itoa(cpus)
	}
	if cpus == 1 {
		unit = "vCPU"
	}
	ram := "?GB"
	switch {
	case ramBytes > 0 && ramBytes%gib == 0:
		ram = fmt.Sprintf("%dGB", ramBytes/gib)
	case ramBytes > 0:
		ram = fmt.Sprintf("%dMB", ramBytes/mib)
	}
	return fmt.Sprintf("%s %s, %s RAM, GPUs: %d", c, unit, ram, gpus)
}

// formatIEC renders a byte count as 4GiB, 512MiB or bytes; zero is empty.
func formatIEC(b int64) string {
	switch {
	case b <= 0:
		return ""
	case b%gib == 0:
		return fmt.Sprintf("%dGiB", b/gib)
	case b%mib == 0:
		return fmt.Sprintf("%dMiB", b/mib)
	case b >= gib:
		return fmt.Sprintf("%.1fGiB", float64(b)/gib)
	}
	return fmt.Sprintf("%dB", b)
}

func formatTime(t time.Time, loc *time.Location) string {
	if t.IsZero() {
		return ""
	}
	return t.In(loc).Format(listTimeLayout)
}

// count renders a positive number, and nothing for zero.
func count(n int) string {
	if n <= 0 {
		return ""
	}
	return strconv.Itoa(n)
}

// formatUptime rounds a duration to seconds; zero is empty.
func formatUptime(d time.Duration) string {
	if d <= 0 {
		return ""
	}
	return d.Round(time.Second).String()
}
