package cli

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/openslicer/openslicer/api"
)

func TestWriteTop(t *testing.T) {
	first := []api.NodeStat{{Hostname: "a-1", Snapshot: &api.Snapshot{NetworkReadTotal: 1000, DiskWriteTotal: 0}}}
	second := []api.NodeStat{
		{Hostname: "a-1", IP: "10.0.0.2", Snapshot: &api.Snapshot{TotalCPUS: 2, LoadAvg1: 0.5, MemoryUsed: 64 << 20,
			NetworkReadTotal: 3048, DiskWriteTotal: 4 << 20, DiskSpaceUsedPercent: 12.5, Uptime: "1m2s"}},
		{Hostname: "a-2", Error: "vm is paused"},
	}
	var out bytes.Buffer
	writeTop(&out, first, second, 2*time.Second)
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "HOST") {
		t.Fatalf("writeTop output:\n%s", out.String())
	}
	for _, want := range []string{"a-1", "10.0.0.2", "0.50", "64.0MiB", "12.5%", "1.0KiB/s", "2.0MiB/s", "1m2s"} {
		if !strings.Contains(lines[2], want) {
			t.Errorf("row %q lacks %q", lines[2], want)
		}
	}
	if f := strings.Fields(lines[3]); f[0] != "a-2" || f[2] != "-" {
		t.Errorf("paused vm row = %q, want dashes", lines[3])
	}
}

func TestBytesHuman(t *testing.T) {
	for in, want := range map[float64]string{0: "0B", 1023: "1023B", 1024: "1.0KiB", 1.5 * (1 << 30): "1.5GiB"} {
		if got := bytesHuman(in); got != want {
			t.Errorf("bytesHuman(%v) = %q, want %q", in, got, want)
		}
	}
}
