package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/client"
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
