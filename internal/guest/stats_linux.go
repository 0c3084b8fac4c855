package guest

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"golang.org/x/sys/unix"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/agent"
	"github.com/openslicer/openslicer/internal/procfile"
)

// stats answers GET /v1/stats with a snapshot of the guest's resources.
func (s *Server) stats(w http.ResponseWriter, r *http.Request) {
	snap, err := s.snapshot(time.Now().UTC())
	if err != nil {
		agent.WriteError(w, err)
		return
	}
	agent.WriteJSON(w, http.StatusOK, snap)
}

// snapshot reads the guest's resource usage. Memory, load, uptime and CPUs
// must be readable; the other figures are left at zero when their source
// is missing (a kernel without IPv6 has no /proc/net/tcp6).
func (s *Server) snapshot(now time.Time) (*api.Snapshot, error) {
	var errs []error
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(s.paths.proc, name))
		if err != nil {
			errs = append(errs, err)
		}
		return b
	}
	mem, err := procfile.Meminfo(read("meminfo"))
	errs = append(errs, err)
	load, err := procfile.Loadavg(read("loadavg"))
	errs = append(errs, err)
	up, err := parseUptime(read("uptime"))
	errs = append(errs, err)
	cpus := countCPUs(read("stat"))
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("read guest stats: %w", err)
	}

	host, _ := os.Hostname()
	snap := &api.Snapshot{
		Hostname:          host,
		Arch:              archName(runtime.GOARCH),
		Timestamp:         now,
		Uptime:            formatUptime(up),
		TotalCPUS:         cpus,
		TotalMemory:       mem.Total,
		MemoryUsed:        mem.Total - mem.Available,
		MemoryAvailable:   mem.Available,
		MemoryUsedPercent: percent(mem.Total-mem.Available, mem.Total),
		LoadAvg1:          load[0],
		LoadAvg5:          load[1],
		LoadAvg15:         load[2],
	}
	s.addOptionalStats(snap)
	return snap, nil
}

// addOptionalStats fills the figures whose sources may be missing.
func (s *Server) addOptionalStats(snap *api.Snapshot) {
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(s.paths.proc, name))
		if err != nil {
			s.log.Debug("stats: source missing", "err", err)
		}
		return b
	}
	disk := parseDiskstats(read("diskstats"))
	snap.DiskReadTotal, snap.DiskWriteTotal = float64(disk.ReadBytes), float64(disk.WriteBytes)
	snap.DiskIOInflight = disk.Inflight

	rx, tx := parseNetDev(read("net/dev"))
	snap.NetworkReadTotal, snap.NetworkWriteTotal = float64(rx), float64(tx)
	snap.OpenConnections = procfile.EstablishedTCP(read("net/tcp")) + procfile.EstablishedTCP(read("net/tcp6"))

	if n, err := procfile.FirstInt(read("sys/fs/file-nr")); err == nil {
		snap.OpenFiles = n
	}
	if n, err := procfile.FirstInt(read("sys/kernel/random/entropy_avail")); err == nil {
		snap.Entropy = n
	}

	var st unix.Statfs_t
	if err := unix.Statfs(s.paths.statfsRoot, &st); err != nil {
		s.log.Debug("stats: statfs", "path", s.paths.statfsRoot, "err", err)
		return
	}
	ds := diskSpaceOf(st.Blocks, st.Bfree, st.Bavail, uint64(st.Bsize))
	snap.DiskSpaceTotal, snap.DiskSpaceUsed, snap.DiskSpaceFree = ds.Total, ds.Used, ds.Free
	snap.DiskSpaceUsedPercent = ds.UsedPercent
}
