package e2e

import (
	"context"
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

// TestCrashDuringMemoryCommit kills the daemon (SIGKILL) while a memory
// commit of a running VM is under way, at a random point of its measured
// length, and starts it again, once per round, each round on a new
// source. After every restart: a commit the client was answered for is
// listed in mode memory with its state; any other commit of the source
// is either gone or (the capture had moved the disk) a disk commit
// without state; the commits directory holds only memory commits'
// states, the disks directory only the VMs' disks and the layers and
// overlays of listed commits; every source runs and still has its
// process and files in memory; one QEMU per VM. A memory commit made
// before is forked, and the child has the source's process. At the end
// everything is deleted and nothing is left. SLICER_E2E_CRASH_ROUNDS
// scales the rounds.
func TestCrashDuringMemoryCommit(t *testing.T) {
	testenv.RequireE2E(t)
	rounds := envInt("SLICER_E2E_CRASH_ROUNDS", 3)
	d := startDaemonYAML(t, hotGroupYAML)
	cfg := filepath.Join(d.dataDir, "slicer.yaml")
	ctx := context.Background()
	newSource := func() string {
		t.Helper()
		h := createReady(t, d.client, "hf", api.CreateNodeRequest{Persistent: true}).Hostname
		if _, errOut, code := execIn(t, d.client, h, &api.ExecRequest{Shell: "/bin/sh", UID: u32(0), Command: hotSetup}, nil); code != 0 {
			t.Fatalf("set up %s: exit %d: %s", h, code, errOut)
		}
		return h
	}

	first := newSource()
	start := time.Now()
	kept, err := d.client.CommitVMWithOptions(ctx, first, api.CommitVMRequest{Mode: api.CommitModeMemory})
	if err != nil {
		t.Fatal(err)
	}
	commitTook := time.Since(start)
	answered := []string{kept.CommitID}
	sources := []string{first}

	for round := 1; round <= rounds; round++ {
		src := newSource()
		sources = append(sources, src)
		var resp *api.CommitVMResponse
		var cerr error
		var wg sync.WaitGroup
		wg.Go(func() {
			resp, cerr = d.client.CommitVMWithOptions(ctx, src, api.CommitVMRequest{Mode: api.CommitModeMemory})
		})
		delay := rand.N(commitTook*3/2 + time.Millisecond)
		time.Sleep(delay)
		d.cmd.Process.Kill()
		d.wait()
		d.start(cfg)
		wg.Wait()
		if cerr == nil {
			answered = append(answered, resp.CommitID)
		}
		commits, err := d.client.ListCommits(ctx, client.CommitListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("round %d: killed after %s of a %s memory commit; answered %v; commits %+v", round, delay.Round(time.Millisecond),
			commitTook.Round(time.Millisecond), cerr == nil, commits)
		var listed, memory []string
		for _, c := range commits {
			listed = append(listed, c.CommitID)
			if c.Mode == api.CommitModeMemory {
				memory = append(memory, c.CommitID)
			}
		}
		for _, id := range answered {
			if !slices.Contains(memory, id) {
				t.Errorf("round %d: memory commit %s was answered but is not listed in mode memory", round, id)
			}
		}
		checkHotDirs(t, d, listed, memory)
		for _, h := range sources {
			out, _, code := execIn(t, d.client, h, &api.ExecRequest{Shell: "/bin/sh", UID: u32(0), Command: hotState}, nil)
			if code != 0 || out != "sleep 1000 \nhot-data\ndisk-data\n" {
				t.Errorf("round %d: %s after the crash: exit %d\n%s", round, h, code, out)
			}
		}
		if procs := qemuProcesses(d.dataDir); len(procs) != len(sources) {
			t.Errorf("round %d: %d qemu processes, want the %d sources'", round, len(procs), len(sources))
		}
	}

	child, err := d.client.ForkCommittedVM(ctx, kept.CommitID, api.ForkVMRequest{}, client.ForkOptions{Wait: client.WaitAgent, Timeout: 3 * time.Minute})
	if err != nil {
		t.Fatalf("fork of %s after the crashes: %v", kept.CommitID, err)
	}
	if out, _, code := execIn(t, d.client, child.Hostname, &api.ExecRequest{Shell: "/bin/sh", UID: u32(0), Command: hotState}, nil); code != 0 ||
		out != "sleep 1000 \nhot-data\ndisk-data\n" {
		t.Errorf("fork after the crashes: exit %d\n%s", code, out)
	}
	for _, h := range append([]string{child.Hostname}, sources...) {
		if _, err := d.client.DeleteNode(ctx, "hf", h); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range commitIDs(t, d.client) {
		if _, err := d.client.DeleteCommit(ctx, id); err != nil {
			t.Fatalf("delete commit %s: %v", id, err)
		}
	}
	d.assertNothingLeft(t)
	checkCommitDirs(t, d, nil)
	log, _ := os.ReadFile(filepath.Join(d.dataDir, "daemon.log"))
	t.Logf("memory commits removed at start: %d; kept as disk commits: %d",
		strings.Count(string(log), "removing a memory commit cut short"), strings.Count(string(log), "kept as a disk commit"))
}

// checkHotDirs checks that the commits directory holds a whole state for
// each memory commit and nothing else, and that the disks directory
// holds only VM disks (<host>.img) and the overlays of listed commits
// (<host>.<commit>.qcow2), no temporary file.
func checkHotDirs(t *testing.T, d *daemon, listed, memory []string) {
	t.Helper()
	entries, _ := os.ReadDir(filepath.Join(d.dataDir, "commits"))
	var dirs []string
	for _, e := range entries {
		dirs = append(dirs, e.Name())
		if _, err := os.Stat(filepath.Join(d.dataDir, "commits", e.Name(), "state", "manifest.json")); err != nil {
			t.Errorf("commit directory %s has no whole state: %v", e.Name(), err)
		}
	}
	want := slices.Clone(memory)
	slices.Sort(want)
	slices.Sort(dirs)
	if !slices.Equal(dirs, want) {
		t.Errorf("commit directories %v, want the memory commits' %v", dirs, want)
	}
	disks, _ := os.ReadDir(filepath.Join(d.dataDir, "disks"))
	for _, e := range disks {
		name := e.Name()
		if strings.HasSuffix(name, ".img") {
			continue
		}
		parts := strings.Split(name, ".")
		if len(parts) != 3 || parts[2] != "qcow2" || !slices.Contains(listed, parts[1]) {
			t.Errorf("disks/%s is neither a vm's disk nor a listed commit's overlay", name)
		}
	}
}
