package guest

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/openslicer/openslicer/internal/procfile"
)

// The parsers below read the /proc files behind GET /v1/stats that only
// the guest reads (those the host reads too, meminfo, loadavg, net/tcp and
// file-nr, are internal/procfile's). Each takes a file's content and is
// tested on samples; stats_linux.go reads the files.

// parseUptime reads the seconds since boot from /proc/uptime.
func parseUptime(data []byte) (time.Duration, error) {
	f := strings.Fields(string(data))
	if len(f) == 0 {
		return 0, fmt.Errorf("uptime: empty")
	}
	secs, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return 0, fmt.Errorf("uptime: %w", err)
	}
	return time.Duration(secs * float64(time.Second)), nil
}

// formatUptime is the uptime as the snapshot shows it: a Go duration
// rounded to the second, such as "6m53s".
func formatUptime(d time.Duration) string {
	return d.Round(time.Second).String()
}

// countCPUs counts the online CPUs in /proc/stat: its "cpuN" lines.
func countCPUs(procStat []byte) int {
	n := 0
	for _, f := range procfile.LineFields(procStat) {
		if rest, ok := strings.CutPrefix(f[0], "cpu"); ok && rest != "" {
			if _, err := strconv.Atoi(rest); err == nil {
				n++
			}
		}
	}
	return n
}

// diskTotals sums the whole virtio disks of /proc/diskstats.
type diskTotals struct {
	ReadBytes, WriteBytes uint64
	Inflight              int64 // I/Os in progress
}

// diskstats field indexes (after major, minor, name: see the kernel's
// Documentation/admin-guide/iostats.rst).
const (
	dsName           = 2
	dsSectorsRead    = 5
	dsSectorsWritten = 9
	dsInflight       = 11
	sectorSize       = 512
)

// parseDiskstats sums sectors read and written, in bytes, and the I/Os in
// flight over the whole virtio disks (vda, vdb, …; not partitions).
func parseDiskstats(data []byte) diskTotals {
	var t diskTotals
	for _, f := range procfile.LineFields(data) {
		if len(f) <= dsInflight || !isVirtioDisk(f[dsName]) {
			continue
		}
		t.ReadBytes += parseUintOr0(f[dsSectorsRead]) * sectorSize
		t.WriteBytes += parseUintOr0(f[dsSectorsWritten]) * sectorSize
		if n, err := strconv.ParseInt(f[dsInflight], 10, 64); err == nil {
			t.Inflight += n
		}
	}
	return t
}

// isVirtioDisk reports whether name is a whole virtio block disk: "vd"
// and letters only.
func isVirtioDisk(name string) bool {
	rest, ok := strings.CutPrefix(name, "vd")
	if !ok || rest == "" {
		return false
	}
	for _, c := range rest {
		if c < 'a' || c > 'z' {
			return false
		}
	}
	return true
}

// parseNetDev sums the bytes received and sent over every interface of
// /proc/net/dev but the loopback.
func parseNetDev(data []byte) (rx, tx uint64) {
	for line := range strings.Lines(string(data)) {
		name, counters, ok := strings.Cut(line, ":")
		name = strings.TrimSpace(name)
		if !ok || name == "lo" || strings.Contains(name, "|") {
			continue
		}
		f := strings.Fields(counters)
		if len(f) < 9 {
			continue
		}
		rx += parseUintOr0(f[0]) // receive bytes
		tx += parseUintOr0(f[8]) // transmit bytes
	}
	return rx, tx
}

// archName is the kernel's (uname -m) name for a Go architecture.
func archName(goarch string) string {
	switch goarch {
	case "amd64":
		return "x86_64"
	case "arm64":
		return "aarch64"
	case "386":
		return "i686"
	}
	return goarch
}

// diskSpace is a file system's space in bytes, as df shows it: free is
// what unprivileged users may still use, and the percentage is of what
// they can have (used plus free).
type diskSpace struct {
	Total, Used, Free uint64
	UsedPercent       float64
}

// diskSpaceOf works out diskSpace from statfs(2)'s block counts.
func diskSpaceOf(blocks, bfree, bavail, bsize uint64) diskSpace {
	used := (blocks - min(bfree, blocks)) * bsize
	free := bavail * bsize
	return diskSpace{Total: blocks * bsize, Used: used, Free: free, UsedPercent: percent(used, used+free)}
}

// percent is part of whole in percent, 0 when whole is 0.
func percent(part, whole uint64) float64 {
	if whole == 0 {
		return 0
	}
	return float64(part) / float64(whole) * 100
}

func parseUintOr0(s string) uint64 {
	n, _ := strconv.ParseUint(s, 10, 64)
	return n
}
