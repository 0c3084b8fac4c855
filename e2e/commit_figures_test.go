package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/client"
	"github.com/openslicer/openslicer/internal/testenv"
)

// TestColdForkFigures measures, with a real daemon, and logs (it asserts
// nothing about speed): the time of a commit; a fork until its agent is
// ready (wait=agent, fix-ups included, and without fix-ups) against a cold
// create until its agent is ready, in alternating pairs, as the median of
// the per-pair ratios; and the disk space of N forks next to their
// commit's layer and a cold-created VM's disk. It runs only with
// SLICER_E2E_FIGURES=1; SLICER_E2E_FIGURES_PAIRS (default 5) and
// SLICER_E2E_FIGURES_FORKS (default 10) scale it.
func TestColdForkFigures(t *testing.T) {
	testenv.RequireE2E(t)
	if os.Getenv("SLICER_E2E_FIGURES") != "1" {
		t.Skip("set SLICER_E2E_FIGURES=1 to measure commits and forks")
	}
	pairs, forks := envInt("SLICER_E2E_FIGURES_PAIRS", 5), envInt("SLICER_E2E_FIGURES_FORKS", 10)
	d := startDaemon(t, "fg")
	c, ctx := d.client, context.Background()
	wait := client.CreateOptions{Wait: "agent", Timeout: 3 * time.Minute}
	fork := client.ForkOptions{Wait: client.WaitAgent, Timeout: 3 * time.Minute}

	src := createReady(t, c, "fg", api.CreateNodeRequest{Persistent: true}).Hostname
	execIn(t, c, src, &api.ExecRequest{Shell: "/bin/sh", UID: u32(0), Command: "dd if=/dev/urandom of=/root/data bs=1M count=32 2>/dev/null; sync"}, nil)
	if err := c.Shutdown(ctx, src, "shutdown"); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, c, src, api.StatusStopped)
	start := time.Now()
	commit, err := c.CommitVMWithOptions(ctx, src, api.CommitVMRequest{CacheKey: "figures"})
	if err != nil {
		t.Fatal(err)
	}
	commitTook := time.Since(start)

	var creates, forksAt, bare, ratios, bareRatios []time.Duration
	timeIt := func(f func() string) time.Duration {
		start := time.Now()
		host := f()
		took := time.Since(start)
		if _, err := c.DeleteNode(ctx, "fg", host); err != nil {
			t.Fatal(err)
		}
		return took
	}
	for range pairs {
		cr := timeIt(func() string {
			resp, err := c.CreateNode(ctx, "fg", api.CreateNodeRequest{}, wait)
			if err != nil {
				t.Fatal(err)
			}
			return resp.Hostname
		})
		fk := timeIt(func() string {
			resp, err := c.ForkCommittedVM(ctx, commit.CommitID, api.ForkVMRequest{}, fork)
			if err != nil {
				t.Fatal(err)
			}
			return resp.Hostname
		})
		none := []string{}
		bk := timeIt(func() string {
			resp, err := c.ForkCommittedVM(ctx, commit.CommitID, api.ForkVMRequest{Fixups: &none}, fork)
			if err != nil {
				t.Fatal(err)
			}
			return resp.Hostname
		})
		creates, forksAt, bare = append(creates, cr), append(forksAt, fk), append(bare, bk)
		// Ratios in thousandths, kept as durations to share median.
		ratios = append(ratios, time.Duration(1000*fk/cr))
		bareRatios = append(bareRatios, time.Duration(1000*bk/cr))
	}
	t.Logf("commit of a stopped VM (qcow2 disk with 32 MiB written): %s", commitTook.Round(time.Millisecond))
	t.Logf("cold create wait=agent: median %s of %d", median(creates).Round(time.Millisecond), pairs)
	t.Logf("fork wait=agent, fix-ups: median %s; per-pair ratio fork/create median %.2f", median(forksAt).Round(time.Millisecond), float64(median(ratios))/1000)
	t.Logf("fork wait=agent, fixups=[]: median %s; per-pair ratio median %.2f", median(bare).Round(time.Millisecond), float64(median(bareRatios))/1000)

	// Disk space: N forks up and idle, against the layer and a cold VM.
	var hosts []string
	for range forks {
		resp, err := c.ForkCommittedVM(ctx, commit.CommitID, api.ForkVMRequest{}, fork)
		if err != nil {
			t.Fatal(err)
		}
		hosts = append(hosts, resp.Hostname)
	}
	cold := createReady(t, c, "fg", api.CreateNodeRequest{}).Hostname
	var sum, most int64
	for _, h := range hosts {
		n := allocated(t, filepath.Join(d.dataDir, "disks", h+".img"))
		sum += n
		most = max(most, n)
	}
	layers, _ := filepath.Glob(filepath.Join(d.dataDir, "commits", commit.CommitID, "disk.*"))
	layer := allocated(t, layers[0])
	t.Logf("disk: commit layer %s; %d forks %s in all (largest %s); a cold-created VM's disk %s; the source's overlay since the commit %s",
		mib(layer), forks, mib(sum), mib(most), mib(allocated(t, filepath.Join(d.dataDir, "disks", cold+".img"))),
		mib(allocated(t, filepath.Join(d.dataDir, "disks", src+".img"))))

	for _, h := range append(hosts, cold, src) {
		if _, err := c.DeleteNode(ctx, "fg", h); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.DeleteCommit(ctx, commit.CommitID); err != nil {
		t.Fatal(err)
	}
	d.assertNothingLeft(t)
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// allocated is the disk space a file takes (its allocated blocks).
func allocated(t *testing.T, p string) int64 {
	t.Helper()
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return st.Sys().(*syscall.Stat_t).Blocks * 512
}

func mib(n int64) string { return fmt.Sprintf("%.2f MiB", float64(n)/(1<<20)) }
