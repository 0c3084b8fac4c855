package e2e

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/client"
	"github.com/openslicer/openslicer/internal/network"
	"github.com/openslicer/openslicer/internal/testenv"
)

// TestCrashRecovery kills the daemon with SIGKILL while creates are in
// flight, starts it again, and checks that the persistent VM is re-attached
// and answers, the ephemeral ones are gone, and nothing else is left.
func TestCrashRecovery(t *testing.T) {
	testenv.RequireE2E(t)
	t.Parallel()
	d := startDaemon(t, "cr")
	c, ctx := d.client, context.Background()
	keep := createReady(t, c, "cr", api.CreateNodeRequest{Persistent: true})
	root := u32(0)
	execIn(t, c, keep.Hostname, &api.ExecRequest{Command: "setsid sleep 5151 </dev/null >/dev/null 2>&1 &", Shell: "/bin/sh", UID: root}, nil)
	createReady(t, c, "cr", api.CreateNodeRequest{}) // a running ephemeral VM at crash time

	// Creates in flight, at whatever step they have reached, when the
	// daemon dies.
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.CreateNode(ctx, "cr", api.CreateNodeRequest{}, client.CreateOptions{Wait: "agent", Timeout: 3 * time.Minute})
		}()
	}
	time.Sleep(700 * time.Millisecond)
	d.cmd.Process.Kill()
	d.wait()
	wg.Wait()

	d.start(filepath.Join(d.dataDir, "slicer.yaml"))
	c = d.client
	nodes, err := c.ListNodes(ctx, client.ListOptions{})
	if err != nil || len(nodes) != 1 || nodes[0].Hostname != keep.Hostname || nodes[0].Status != api.StatusRunning {
		t.Fatalf("after the crash ListNodes = %+v, %v; want only %s, running", nodes, err, keep.Hostname)
	}
	out, _, _ := execIn(t, c, keep.Hostname, &api.ExecRequest{Command: "ps", UID: root}, nil)
	if !strings.Contains(out, "sleep 5151") {
		t.Fatalf("re-attached vm lost the process started before the crash:\n%s", out)
	}
	if procs := qemuProcesses(d.dataDir); len(procs) != 1 {
		t.Errorf("qemu processes after recovery: %v, want only the persistent vm's", procs)
	}
	for dir, want := range map[string]string{"disks": keep.Hostname + ".img", "run": keep.Hostname} {
		entries, _ := os.ReadDir(filepath.Join(d.dataDir, dir))
		if len(entries) != 1 || entries[0].Name() != want {
			t.Errorf("%s after recovery: %v, want only %s", dir, entries, want)
		}
	}
	if _, err := c.DeleteNode(ctx, "cr", keep.Hostname); err != nil {
		t.Fatal(err)
	}
	d.assertNothingLeft(t)
}

// TestCountAndSizes: count VMs exist at start and are protected; a VM asked
// for fewer CPUs and less memory than its group gets them, visibly in the
// guest; more is 400.
func TestCountAndSizes(t *testing.T) {
	testenv.RequireE2E(t)
	t.Parallel()
	d := startDaemonYAML(t, `  - name: cnt
    count: 1
    vcpu: 2
    ram_mb: 512
    storage_size: 1G
`)
	c, ctx := d.client, context.Background()
	nodes, err := c.GroupNodes(ctx, "cnt", client.ListOptions{})
	if err != nil || len(nodes) != 1 || nodes[0].Hostname != "cnt-1" || !nodes[0].Persistent {
		t.Fatalf("count vms at start = %+v, %v; want cnt-1, persistent", nodes, err)
	}
	var ae *api.Error
	if _, err := c.DeleteNode(ctx, "cnt", "cnt-1"); !errors.As(err, &ae) || ae.StatusCode != http.StatusForbidden {
		t.Errorf("delete of a count vm = %v, want 403", err)
	}
	out, _, _ := execIn(t, c, "cnt-1", &api.ExecRequest{Command: "nproc"}, nil)
	if strings.TrimSpace(out) != "2" {
		t.Errorf("count vm nproc = %q, want the group's 2", out)
	}

	small := createReady(t, c, "cnt", api.CreateNodeRequest{CPUs: 1, RamBytes: 256 << 20})
	out, _, _ = execIn(t, c, small.Hostname, &api.ExecRequest{Command: "nproc; grep MemTotal /proc/meminfo", Shell: "/bin/sh"}, nil)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || lines[0] != "1" {
		t.Fatalf("small vm nproc/meminfo = %q, want 1 cpu", out)
	}
	var kb int
	if _, err := fmt.Sscan(strings.Fields(lines[1])[1], &kb); err != nil || kb > 256*1024 || kb < 128*1024 {
		t.Errorf("small vm MemTotal = %s, want at most 256 MiB", lines[1])
	}
	if _, err := c.CreateNode(ctx, "cnt", api.CreateNodeRequest{CPUs: 4}, client.CreateOptions{}); !errors.As(err, &ae) || ae.StatusCode != http.StatusBadRequest || !strings.Contains(ae.Message, "limit of 2") {
		t.Errorf("cpus above the group = %v, want 400 naming the limit", err)
	}
	if _, err := c.DeleteNode(ctx, "cnt", small.Hostname); err != nil {
		t.Fatal(err)
	}

	// Count VMs are launched again at every start.
	d.stop()
	d.start(filepath.Join(d.dataDir, "slicer.yaml"))
	if nodes, err := d.client.GroupNodes(ctx, "cnt", client.ListOptions{}); err != nil || len(nodes) != 1 || nodes[0].Status != api.StatusRunning {
		t.Fatalf("after restart count vms = %+v, %v", nodes, err)
	}
	if out, _, code := execIn(t, d.client, "cnt-1", &api.ExecRequest{Command: "true"}, nil); code != 0 {
		t.Errorf("count vm after restart: exec true = %q exit %d", out, code)
	}
}

// crashGroupsYAML: an isolated group for API creates (so each VM has a
// network namespace, rules and devices) and a group with one count VM.
const crashGroupsYAML = `  - name: cun
    count: 0
    vcpu: 1
    ram_mb: 256
    storage: image
    storage_size: 1G
    network:
      mode: isolated
  - name: cuc
    count: 1
    vcpu: 1
    ram_mb: 256
    storage: image
    storage_size: 1G
`

// envInt is the integer in the environment variable name, or def.
func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

// TestCrashUnansweredCreates: parallel creates, persistent and ephemeral,
// wait=agent and wait=none, are in flight when the daemon is killed
// (SIGKILL) 0.4 to 5 s later. After the restart the persistent VMs whose
// create some client got a 2xx for are there, re-attached, and nothing else
// is: no VM, process, disk, run directory or network namespace of a create
// that was never answered. The count VM is re-attached every time.
// SLICER_E2E_CRASH_ROUNDS and SLICER_E2E_CRASH_CREATES (wait=agent creates
// per round, half persistent; two wait=none creates come on top) scale it.
func TestCrashUnansweredCreates(t *testing.T) {
	testenv.RequireE2E(t)
	testenv.RequireRoot(t)
	t.Parallel()
	rounds, creates := envInt("SLICER_E2E_CRASH_ROUNDS", 2), envInt("SLICER_E2E_CRASH_CREATES", 4)
	lab := newNetLab(t)
	d := startDaemonIn(t, lab.host, crashGroupsYAML)
	cfg := filepath.Join(d.dataDir, "slicer.yaml")
	ctx := context.Background()
	waitStatus(t, d.client, "cuc-1", api.StatusRunning)
	var answered, unanswered, ephemeralAnswered int
	for round := 1; round <= rounds; round++ {
		type result struct {
			host       string
			persistent bool
		}
		var mu sync.Mutex
		var got []result // the creates some client got a 2xx for
		var wg sync.WaitGroup
		launch := func(persistent bool, wait string) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := d.client.CreateNode(ctx, "cun", api.CreateNodeRequest{Persistent: persistent}, client.CreateOptions{Wait: wait, Timeout: 3 * time.Minute})
				if err == nil {
					mu.Lock()
					got = append(got, result{resp.Hostname, persistent})
					mu.Unlock()
				}
			}()
		}
		for i := range creates {
			launch(i%2 == 0, "agent")
		}
		launch(true, "")
		launch(false, "")
		delay := 400*time.Millisecond + rand.N(4600*time.Millisecond)
		time.Sleep(delay)
		d.cmd.Process.Kill()
		d.wait()
		wg.Wait()

		want := map[string]bool{}
		for _, r := range got {
			if r.persistent {
				want[r.host] = true
			} else {
				ephemeralAnswered++
			}
		}
		answered += len(want)
		unanswered += (creates+1)/2 + 1 - len(want)
		t.Logf("round %d: killed after %s; %d of %d creates answered (%d persistent)", round, delay.Round(time.Millisecond), len(got), creates+2, len(want))

		d.start(cfg)
		nodes, err := d.client.GroupNodes(ctx, "cun", client.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		have := map[string]bool{}
		for _, n := range nodes {
			have[n.Hostname] = true
			if !want[n.Hostname] {
				t.Errorf("round %d: %s (%s) survived, but no client got an answer for it", round, n.Hostname, n.State)
			}
		}
		for h := range want {
			if !have[h] {
				t.Errorf("round %d: %s was lost, though its create was answered", round, h)
			}
		}
		// The count VM is the same one, re-attached.
		cnt, err := d.client.GroupNodes(ctx, "cuc", client.ListOptions{})
		if err != nil || len(cnt) != 1 || cnt[0].Hostname != "cuc-1" || cnt[0].Status != api.StatusRunning {
			t.Errorf("round %d: count vms %+v, %v; want cuc-1 running", round, cnt, err)
		}
		// Nothing else: processes, disks, run directories, namespaces.
		if procs := qemuProcesses(d.dataDir); len(procs) != len(want)+1 {
			t.Errorf("round %d: %d qemu processes, want %d (the answered persistent vms and cuc-1)", round, len(procs), len(want)+1)
		}
		for dir, per := range map[string][]string{"disks": {".img", ".net.json"}, "run": {""}} {
			entries, _ := os.ReadDir(filepath.Join(d.dataDir, dir))
			for _, e := range entries {
				host := strings.TrimSuffix(strings.TrimSuffix(e.Name(), ".net.json"), ".img")
				if !want[host] && host != "cuc-1" {
					t.Errorf("round %d: %s/%s left of a create nobody was answered for", round, dir, e.Name())
				}
			}
			if n := len(want)*len(per) + 1; len(entries) != n {
				t.Errorf("round %d: %d entries in %s, want %d", round, len(entries), dir, n)
			}
		}
		ns, _ := os.ReadDir(network.DefaultNetNSDir)
		var mine []string
		for _, e := range ns {
			if strings.Contains(e.Name(), "cun-") {
				mine = append(mine, e.Name())
			}
		}
		if len(mine) != len(want) {
			t.Errorf("round %d: network namespaces %v, want one for each of %v", round, mine, want)
		}
		for h := range want {
			if out, _, code := execIn(t, d.client, h, &api.ExecRequest{Command: "true"}, nil); code != 0 {
				t.Errorf("round %d: re-attached %s: exec true = %q exit %d", round, h, out, code)
			}
			if _, err := d.client.DeleteNode(ctx, "cun", h); err != nil {
				t.Fatal(err)
			}
		}
		if t.Failed() {
			d.dumpLog()
			return
		}
	}
	t.Logf("%d rounds of %d creates: %d persistent creates answered and kept, %d persistent creates unanswered and reclaimed, %d ephemeral creates answered (reclaimed as ephemeral)",
		rounds, creates+2, answered, unanswered, ephemeralAnswered)
	d.stop()
	recs := records(t, d)
	if len(recs) != 1 || recs["cuc-1"].State != "stopped" {
		t.Errorf("records after the last stop: %+v; want only cuc-1, stopped", recs)
	}
}
