package guest

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/openslicer/openslicer/api"
)

// TestStatsFromSamples serves stats from a /proc made of the sample files
// and checks every figure drawn from them.
func TestStatsFromSamples(t *testing.T) {
	h := newHarness(t)
	proc := t.TempDir()
	for name, data := range map[string]string{
		"meminfo": sampleMeminfo, "loadavg": sampleLoadavg, "uptime": sampleUptime,
		"stat": sampleProcStat, "diskstats": sampleDiskstats, "net/dev": sampleNetDev,
		"net/tcp": sampleTCP, "net/tcp6": sampleTCP,
		"sys/fs/file-nr": sampleFileNr, "sys/kernel/random/entropy_avail": sampleEntropy,
	} {
		path := filepath.Join(proc, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	h.srv.paths.proc = proc

	before := time.Now().UTC()
	got, err := h.client.Stats(context.Background())
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	host, _ := os.Hostname()
	want := &api.Snapshot{
		Hostname:          host,
		Arch:              archName(runtime.GOARCH),
		Uptime:            "6m53s",
		TotalCPUS:         2,
		TotalMemory:       233148 * 1024,
		MemoryUsed:        (233148 - 190340) * 1024,
		MemoryAvailable:   190340 * 1024,
		MemoryUsedPercent: float64(233148-190340) / 233148 * 100,
		LoadAvg1:          0.52, LoadAvg5: 0.18, LoadAvg15: 0.06,
		DiskReadTotal:     (98712 + 80) * 512,
		DiskWriteTotal:    (4096 + 8) * 512,
		NetworkReadTotal:  121000,
		NetworkWriteTotal: 34500,
		DiskIOInflight:    3,
		OpenConnections:   4, // two in tcp, two in tcp6
		OpenFiles:         1184,
		Entropy:           256,
	}
	opts := cmpopts.IgnoreFields(api.Snapshot{}, "Timestamp", "DiskSpaceTotal", "DiskSpaceUsed", "DiskSpaceFree", "DiskSpaceUsedPercent")
	if diff := cmp.Diff(want, got, opts); diff != "" {
		t.Errorf("Stats (-want +got):\n%s", diff)
	}
	if got.Timestamp.Before(before.Add(-time.Second)) {
		t.Errorf("timestamp %v is before the request (%v)", got.Timestamp, before)
	}
	if got.DiskSpaceTotal == 0 || got.DiskSpaceUsed+got.DiskSpaceFree > got.DiskSpaceTotal {
		t.Errorf("disk space of / = total %d, used %d, free %d; want a non-zero total holding used and free",
			got.DiskSpaceTotal, got.DiskSpaceUsed, got.DiskSpaceFree)
	}
}

// TestStatsOfThisMachine reads the real /proc, as the agent does in a guest.
func TestStatsOfThisMachine(t *testing.T) {
	h := newHarness(t)
	got, err := h.client.Stats(context.Background())
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	if got.TotalCPUS < 1 || got.TotalMemory == 0 || got.MemoryUsed+got.MemoryAvailable != got.TotalMemory || got.OpenFiles == 0 {
		t.Errorf("Stats = %+v; want CPUs, memory and open files", got)
	}
	if _, err := time.ParseDuration(got.Uptime); err != nil {
		t.Errorf("uptime %q is not a Go duration: %v", got.Uptime, err)
	}
}

func TestStatsWithoutProc(t *testing.T) {
	h := newHarness(t)
	h.srv.paths.proc = t.TempDir()
	if _, err := h.client.Stats(context.Background()); err == nil {
		t.Error("Stats without /proc succeeded, want an error")
	}
}
