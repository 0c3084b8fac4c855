package e2e

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/client"
	"github.com/openslicer/openslicer/internal/testenv"
)

// hotGroupYAML is a host group without network, as memory commits need.
const hotGroupYAML = `  - name: hf
    count: 0
    vcpu: 1
    ram_mb: 256
    storage: image
    storage_size: 1G
`

// hotSetup starts, in the source, a process that outlives the exec (its
// pid in /tmp/sleep.pid), and writes a file in /tmp and one on the disk.
const hotSetup = `set -e
setsid sleep 1000 </dev/null >/dev/null 2>&1 &
echo $! > /tmp/sleep.pid
echo hot-data > /tmp/hot
echo disk-data > /root/disk
printf '%s\n' 0123456789abcdef0123456789abcdef > /etc/machine-id
sync
`

// hotState is what a guest says of the source's process and files: the
// sleep's command line (empty when it is gone), the two files.
const hotState = `cat /proc/$(cat /tmp/sleep.pid)/cmdline | tr '\0' ' '; echo; cat /tmp/hot /root/disk`

// TestHotFork: a running VM with a background process and files is
// committed with mode memory and keeps running (it answers exec, its
// process alive); two forks of the commit both have the process running
// and the files, each its own hostname and machine-id, and they read
// different bytes from /dev/urandom; what the source writes after the
// commit, no fork sees. The commit is listed in mode memory and cannot be
// deleted while its children live; at the end nothing is left.
func TestHotFork(t *testing.T) {
	testenv.RequireE2E(t)
	d := startDaemonYAML(t, hotGroupYAML)
	c, ctx := d.client, context.Background()

	src := createReady(t, c, "hf", api.CreateNodeRequest{}).Hostname
	if _, errOut, code := execIn(t, c, src, &api.ExecRequest{Shell: "/bin/sh", UID: u32(0), Command: hotSetup}, nil); code != 0 {
		t.Fatalf("set up the source: exit %d: %s", code, errOut)
	}
	start := time.Now()
	commit, err := c.CommitVMWithOptions(ctx, src, api.CommitVMRequest{Mode: api.CommitModeMemory, Tags: []string{"hot"}})
	if err != nil {
		t.Fatalf("memory commit: %v", err)
	}
	t.Logf("memory commit of %s took %s", src, time.Since(start).Round(time.Millisecond))
	if commit.Mode != api.CommitModeMemory || commit.ParentStatus != api.StateRunning {
		t.Errorf("commit answer %+v", commit)
	}
	listed, err := c.ListCommits(ctx, client.CommitListOptions{Mode: api.CommitModeMemory})
	if err != nil || len(listed) != 1 || listed[0].CommitID != commit.CommitID || listed[0].Mode != api.CommitModeMemory {
		t.Errorf("ListCommits(mode memory) = %+v, %v", listed, err)
	}
	if out, _, code := execIn(t, c, src, &api.ExecRequest{Shell: "/bin/sh", UID: u32(0), Command: hotState + "; echo after > /root/after; sync"}, nil); code != 0 ||
		out != "sleep 1000 \nhot-data\ndisk-data\n" {
		t.Errorf("source after its memory commit: exit %d\n%s", code, out)
	}

	var children, randoms, machineIDs []string
	for range 2 {
		start := time.Now()
		f, err := c.ForkCommittedVM(ctx, commit.CommitID, api.ForkVMRequest{}, client.ForkOptions{Wait: client.WaitAgent, Timeout: 3 * time.Minute})
		if err != nil {
			t.Fatalf("fork: %v", err)
		}
		t.Logf("hot fork %s answered in %s", f.Hostname, time.Since(start).Round(time.Millisecond))
		children = append(children, f.Hostname)
		out, errOut, code := execIn(t, c, f.Hostname, &api.ExecRequest{Shell: "/bin/sh", UID: u32(0), Command: hotState + "; test -e /root/after && echo after-seen || true"}, nil)
		if code != 0 || out != "sleep 1000 \nhot-data\ndisk-data\n" {
			t.Errorf("%s: the source's process and files: exit %d\n%s%s", f.Hostname, code, out, errOut)
		}
		id := guestLines(t, c, f.Hostname, `hostname; cat /etc/machine-id; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n'`)
		if len(id) != 3 || id[0] != f.Hostname {
			t.Errorf("%s: identity %q, want its own hostname", f.Hostname, id)
			continue
		}
		if id[1] == "0123456789abcdef0123456789abcdef" || len(id[1]) != 32 {
			t.Errorf("%s: machine-id %q, want a new one", f.Hostname, id[1])
		}
		machineIDs, randoms = append(machineIDs, id[1]), append(randoms, id[2])
	}
	if len(randoms) == 2 && (randoms[0] == randoms[1] || len(randoms[0]) != 64) {
		t.Errorf("the two forks read %q and %q from /dev/urandom, want 32 different bytes each", randoms[0], randoms[1])
	}
	if len(machineIDs) == 2 && machineIDs[0] == machineIDs[1] {
		t.Errorf("both forks have machine-id %s", machineIDs[0])
	}
	if _, err := c.DeleteCommit(ctx, commit.CommitID); !errors.Is(err, api.ErrConflict) || !strings.Contains(err.Error(), children[0]) {
		t.Errorf("DeleteCommit with children = %v, want 409 naming %s", err, children[0])
	}
	if out, _, code := execIn(t, c, src, &api.ExecRequest{Command: "hostname"}, nil); code != 0 || strings.TrimSpace(out) != src {
		t.Errorf("source after the forks: hostname %q (exit %d)", out, code)
	}
	for _, h := range append(children, src) {
		if _, err := c.DeleteNode(ctx, "hf", h); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.DeleteCommit(ctx, commit.CommitID); err != nil {
		t.Fatalf("DeleteCommit: %v", err)
	}
	d.assertNothingLeft(t)
}

// guestLines runs script as root in host and returns its output lines.
func guestLines(t *testing.T, c *client.Client, host, script string) []string {
	t.Helper()
	out, errOut, code := execIn(t, c, host, &api.ExecRequest{Shell: "/bin/sh", UID: u32(0), Command: script}, nil)
	if code != 0 {
		t.Errorf("%s: %s: exit %d: %s", host, script, code, errOut)
	}
	return strings.Split(strings.TrimSpace(out), "\n")
}

// hotSharedYAML adds to hotGroupYAML a group whose VMs keep their RAM in
// shared memory (hot_fork: true).
const hotSharedYAML = hotGroupYAML + `  - name: hs
    count: 0
    vcpu: 1
    ram_mb: 256
    storage: image
    storage_size: 1G
    hot_fork: true
`

// TestHotForkFigures measures, and logs (it asserts nothing about speed):
// a hot fork of a running VM until the child answers exec (memory commit,
// fork with wait=agent and its fresh identity, first exec), against a
// cold create until it answers exec, in alternating pairs: each pair's
// cold-created VM is the next hot fork's source; then a VM of a hot_fork
// group (RAM in shared memory) is created and hot-forked the same way. It
// reports the medians of the per-pair ratios, of the whole hot fork and of
// the fork alone (commit excluded) against the pair's cold create, and
// logs the daemon's account of the last. It runs only with
// SLICER_E2E_FIGURES=1; SLICER_E2E_FIGURES_PAIRS (default 5).
func TestHotForkFigures(t *testing.T) {
	testenv.RequireE2E(t)
	if os.Getenv("SLICER_E2E_FIGURES") != "1" {
		t.Skip("set SLICER_E2E_FIGURES=1 to measure hot forks")
	}
	pairs := envInt("SLICER_E2E_FIGURES_PAIRS", 5)
	d := startDaemonYAML(t, hotSharedYAML)
	c, ctx := d.client, context.Background()
	wait := client.CreateOptions{Wait: "agent", Timeout: 3 * time.Minute}
	answer := func(host string) {
		if _, _, code := execIn(t, c, host, &api.ExecRequest{Command: "true"}, nil); code != 0 {
			t.Fatalf("%s: exec exit %d", host, code)
		}
	}
	create := func(group string) (string, time.Duration) {
		start := time.Now()
		resp, err := c.CreateNode(ctx, group, api.CreateNodeRequest{}, wait)
		if err != nil {
			t.Fatal(err)
		}
		answer(resp.Hostname)
		return resp.Hostname, time.Since(start)
	}

	type hotRun struct{ whole, commit, fork []time.Duration }
	var colds []time.Duration
	runs := map[string]*hotRun{"hf": {}, "hs": {}}
	ratios := map[string]*hotRun{"hf": {}, "hs": {}} // thousandths of the pair's cold create
	var lastChild, lastSource string
	for range pairs {
		src, cold := create("hf")
		colds = append(colds, cold)
		for _, group := range []string{"hf", "hs"} {
			if group == "hs" {
				src, _ = create("hs")
			}
			whole, commit, forkOnly, child := hotFork(t, c, src, answer)
			lastChild, lastSource = child, src
			r, q := runs[group], ratios[group]
			r.whole, r.commit, r.fork = append(r.whole, whole), append(r.commit, commit), append(r.fork, forkOnly)
			q.whole, q.fork = append(q.whole, 1000*whole/cold), append(q.fork, 1000*forkOnly/cold)
			t.Logf("pair: cold %s; %s: hot %s (commit %s, fork+exec %s)", cold.Round(time.Millisecond), group,
				whole.Round(time.Millisecond), commit.Round(time.Millisecond), forkOnly.Round(time.Millisecond))
		}
	}
	t.Logf("cold create until exec: median %s of %d", median(colds).Round(time.Millisecond), pairs)
	for _, group := range []string{"hf", "hs"} {
		r, q := runs[group], ratios[group]
		t.Logf("%s: hot fork of a running VM until exec (commit+fork+exec): median %s; memory commit median %s; fork+exec median %s",
			group, median(r.whole).Round(time.Millisecond), median(r.commit).Round(time.Millisecond), median(r.fork).Round(time.Millisecond))
		t.Logf("%s: per-pair ratio hot/cold median %.2f; fork of the memory commit until exec / cold, median %.2f",
			group, float64(median(q.whole))/1000, float64(median(q.fork))/1000)
	}
	// Where the last pair's hot fork's time went: the daemon's (debug)
	// log from its memory commit on.
	data, _ := os.ReadFile(filepath.Join(d.dataDir, "daemon.log"))
	log := string(data)
	if i := strings.LastIndex(log, "machine captured"); i >= 0 {
		log = log[strings.LastIndex(log[:i], "\n")+1:]
	}
	t.Logf("daemon log of the last hot fork (%s of %s), from its capture:\n%s", lastChild, lastSource, log)
	d.assertNothingLeft(t)
}

// hotFork memory-commits the running VM src, forks the commit (wait=agent)
// and has the child answer an exec, then deletes child, source and commit.
// It returns how long the three took, the commit alone and the fork and
// exec alone, and the child's name.
func hotFork(t *testing.T, c *client.Client, src string, answer func(string)) (whole, commit, forkOnly time.Duration, child string) {
	t.Helper()
	ctx := context.Background()
	start := time.Now()
	var committed time.Time
	commitID, child := memoryFork(t, c, src, func() { committed = time.Now() })
	answer(child)
	whole, forkOnly = time.Since(start), time.Since(committed)
	group, _, _ := strings.Cut(src, "-")
	for _, h := range []string{child, src} {
		if _, err := c.DeleteNode(ctx, group, h); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.DeleteCommit(ctx, commitID); err != nil {
		t.Fatal(err)
	}
	return whole, committed.Sub(start), forkOnly, child
}

// memoryFork memory-commits the running VM src and forks the commit,
// waiting for the child's agent; committed, when not nil, is called
// between the two. It returns the commit's ID and the child's name.
func memoryFork(t *testing.T, c *client.Client, src string, committed func()) (commitID, child string) {
	t.Helper()
	ctx := context.Background()
	cm, err := c.CommitVMWithOptions(ctx, src, api.CommitVMRequest{Mode: api.CommitModeMemory})
	if err != nil {
		t.Fatal(err)
	}
	if committed != nil {
		committed()
	}
	f, err := c.ForkCommittedVM(ctx, cm.CommitID, api.ForkVMRequest{}, client.ForkOptions{Wait: client.WaitAgent, Timeout: 3 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	return cm.CommitID, f.Hostname
}
