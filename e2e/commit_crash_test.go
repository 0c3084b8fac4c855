package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/client"
	"github.com/openslicer/openslicer/internal/testenv"
)

// TestCrashDuringCommitAndFork kills the daemon (SIGKILL) while a commit,
// then a fork, is under way, at a random point of its measured length, and
// starts it again each time. After every restart: each commit a client
// was answered for is listed, with its layer; no other commit directory
// remains; the source boots and reads its file; a fork some client was
// answered for (wait=agent) is there, and no other child: no record,
// process, disk or run directory of one. At the end everything is deleted
// and nothing is left. SLICER_E2E_CRASH_ROUNDS scales the rounds of each.
func TestCrashDuringCommitAndFork(t *testing.T) {
	testenv.RequireE2E(t)
	t.Parallel()
	rounds := envInt("SLICER_E2E_CRASH_ROUNDS", 3)
	d := startDaemon(t, "cc")
	cfg := filepath.Join(d.dataDir, "slicer.yaml")
	ctx := context.Background()
	src := createReady(t, d.client, "cc", api.CreateNodeRequest{Persistent: true}).Hostname
	execIn(t, d.client, src, &api.ExecRequest{Shell: "/bin/sh", UID: u32(0), Command: "echo data > /root/shared; sync"}, nil)
	stopVM := func() {
		t.Helper()
		if err := d.client.Shutdown(ctx, src, "shutdown"); err != nil {
			t.Fatal(err)
		}
		waitStatus(t, d.client, src, api.StatusStopped)
	}
	stopVM()

	start := time.Now()
	first, err := d.client.CommitVMWithOptions(ctx, src, api.CommitVMRequest{CacheKey: "k0"})
	if err != nil {
		t.Fatal(err)
	}
	commitTook := time.Since(start)
	committed := []string{first.CommitID} // the commits some client got a 200 for

	crash := func(delay time.Duration) {
		time.Sleep(delay)
		d.cmd.Process.Kill()
		d.wait()
		d.start(cfg)
	}
	for round := 1; round <= rounds; round++ {
		var resp *api.CommitVMResponse
		var cerr error
		var wg sync.WaitGroup
		wg.Go(func() {
			resp, cerr = d.client.CommitVMWithOptions(ctx, src, api.CommitVMRequest{CacheKey: fmt.Sprint("k", round)})
		})
		delay := rand.N(commitTook*3/2 + time.Millisecond)
		crash(delay)
		wg.Wait()
		if cerr == nil {
			committed = append(committed, resp.CommitID)
		}
		listed := commitIDs(t, d.client)
		t.Logf("commit round %d: killed after %s of a %s commit; answered %v; listed %d commits", round, delay.Round(time.Millisecond), commitTook.Round(time.Millisecond), cerr == nil, len(listed))
		for _, id := range committed {
			if !slices.Contains(listed, id) {
				t.Errorf("round %d: commit %s was answered but is gone", round, id)
			}
		}
		if n := len(listed) - len(committed); n < 0 || n > 1 {
			t.Errorf("round %d: %d commits listed, %d answered", round, len(listed), len(committed))
		}
		checkCommitDirs(t, d, listed)
		if _, err := d.client.Relaunch(ctx, src); err != nil {
			t.Fatalf("round %d: relaunch of the source: %v", round, err)
		}
		if out, _, _ := execIn(t, d.client, src, &api.ExecRequest{Command: "cat", Args: []string{"/root/shared"}, UID: u32(0)}, nil); out != "data\n" {
			t.Errorf("round %d: the source reads %q after the crash, want its file", round, out)
		}
		stopVM()
	}

	// Forks, the children persistent so that an answered one must survive.
	base := commitIDs(t, d.client)
	latest := base[len(base)-1]
	start = time.Now()
	kept, err := d.client.ForkCommittedVM(ctx, latest, api.ForkVMRequest{Persistent: true}, client.ForkOptions{Timeout: 3 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	forkTook := time.Since(start)
	children := []string{kept.Hostname}
	for round := 1; round <= rounds; round++ {
		var resp *api.ForkVMResponse
		var ferr error
		var wg sync.WaitGroup
		wait := client.WaitAgent
		if round%2 == 0 {
			wait = client.WaitNone
		}
		wg.Go(func() {
			resp, ferr = d.client.ForkCommittedVM(ctx, latest, api.ForkVMRequest{Persistent: true}, client.ForkOptions{Wait: wait, Timeout: 3 * time.Minute})
		})
		delay := rand.N(forkTook*3/2 + time.Millisecond)
		crash(delay)
		wg.Wait()
		nodes, err := d.client.GroupNodes(ctx, "cc", client.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var have []string
		for _, n := range nodes {
			if n.Hostname != src {
				have = append(have, n.Hostname)
			}
		}
		t.Logf("fork round %d (wait=%s): killed after %s of a %s fork; answered %v; children %v", round, wait, delay.Round(time.Millisecond), forkTook.Round(time.Millisecond), ferr == nil, have)
		want := slices.Clone(children)
		if ferr == nil && (wait == client.WaitAgent || slices.Contains(have, resp.Hostname)) {
			// A wait=none child answered before it was finished is
			// reclaimed, as its failed finalisation would have removed it.
			want = append(want, resp.Hostname)
		}
		slices.Sort(want)
		slices.Sort(have)
		if !slices.Equal(have, want) {
			t.Errorf("fork round %d: children %v after the crash, want %v", round, have, want)
		}
		children = have
		if procs := qemuProcesses(d.dataDir); len(procs) != len(children) {
			t.Errorf("fork round %d: %d qemu processes, want the %d children's", round, len(procs), len(children))
		}
		checkDisks(t, d, append([]string{src}, children...))
	}

	for _, h := range append(children, src) {
		if _, err := d.client.DeleteNode(ctx, "cc", h); err != nil {
			t.Fatal(err)
		}
	}
	listed := commitIDs(t, d.client)
	for i := len(listed) - 1; i >= 0; i-- { // each is over the one before
		if _, err := d.client.DeleteCommit(ctx, listed[i]); err != nil {
			t.Fatalf("delete commit %s: %v", listed[i], err)
		}
	}
	d.assertNothingLeft(t)
	checkCommitDirs(t, d, nil)
	// How many crashes fell inside a commit or a fork (informative: the
	// kill points are random).
	log, _ := os.ReadFile(filepath.Join(d.dataDir, "daemon.log"))
	t.Logf("commits undone at start: %d; children reclaimed at start: %d",
		strings.Count(string(log), "undoing a commit cut short"), strings.Count(string(log), "reclaiming vm left by an earlier daemon"))
}

// commitIDs lists the daemon's commits, oldest first.
func commitIDs(t *testing.T, c *client.Client) []string {
	t.Helper()
	commits, err := c.ListCommits(context.Background(), client.CommitListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, ci := range commits {
		ids = append(ids, ci.CommitID)
	}
	return ids
}

// checkCommitDirs checks that the commits directory holds exactly the
// listed commits, each with its layer.
func checkCommitDirs(t *testing.T, d *daemon, listed []string) {
	t.Helper()
	entries, _ := os.ReadDir(filepath.Join(d.dataDir, "commits"))
	var dirs []string
	for _, e := range entries {
		dirs = append(dirs, e.Name())
		layers, _ := filepath.Glob(filepath.Join(d.dataDir, "commits", e.Name(), "disk.*"))
		if len(layers) != 1 || strings.HasSuffix(layers[0], ".tmp") {
			t.Errorf("commit %s holds %v, want one layer", e.Name(), layers)
		}
	}
	want := slices.Clone(listed)
	slices.Sort(want)
	slices.Sort(dirs)
	if !slices.Equal(dirs, want) {
		t.Errorf("commit directories %v, want the listed commits %v", dirs, want)
	}
}

// checkDisks checks that the disks and run directories hold only the
// VMs' own files.
func checkDisks(t *testing.T, d *daemon, vms []string) {
	t.Helper()
	for _, dir := range []string{"disks", "run"} {
		entries, _ := os.ReadDir(filepath.Join(d.dataDir, dir))
		for _, e := range entries {
			host := strings.TrimSuffix(e.Name(), ".img")
			if !slices.Contains(vms, host) {
				t.Errorf("%s/%s left of a vm that is not there", dir, e.Name())
			}
		}
	}
}
