package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/hypervisor"
	"github.com/openslicer/openslicer/internal/testenv"
)

// TestSuspendRestore: a suspended VM has no process; restored, its memory
// (a file on tmpfs) and processes are as they were.
func TestSuspendRestore(t *testing.T) {
	testenv.RequireE2E(t)
	t.Parallel()
	d := startDaemon(t, "sr")
	c, ctx := d.client, context.Background()
	node := createReady(t, c, "sr", api.CreateNodeRequest{})
	host, root := node.Hostname, u32(0)
	execIn(t, c, host, &api.ExecRequest{Command: "setsid sleep 6262 </dev/null >/dev/null 2>&1 & echo in-memory > /tmp/mem", Shell: "/bin/sh", UID: root}, nil)

	if err := c.Suspend(ctx, host); err != nil {
		t.Fatalf("Suspend: %v", err)
	}
	// Slicer's clients see a suspended VM as Paused; the extension field
	// says suspended.
	waitStatus(t, c, host, api.StatusPaused)
	if n := nodeOf(t, c, host); n.State != api.StateSuspended {
		t.Errorf("suspended vm has state %q, want %q", n.State, api.StateSuspended)
	}
	if procs := qemuProcesses(d.dataDir); len(procs) != 0 {
		t.Fatalf("suspended vm still has qemu processes %v", procs)
	}
	// Long enough that a guest clock that stood still is visibly behind.
	time.Sleep(6 * time.Second)
	if err := c.Restore(ctx, host, "agent", 2*time.Minute); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	out, _, _ := execIn(t, c, host, &api.ExecRequest{Command: "date", Args: []string{"+%s"}}, nil)
	guest, err := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
	if skew := time.Now().Unix() - guest; err != nil || skew > 3 || skew < -3 {
		t.Errorf("guest clock after restore = %q, host %d: want them within 3 s (the clock is set on restore)", out, time.Now().Unix())
	}
	out, _, _ = execIn(t, c, host, &api.ExecRequest{Command: "cat /tmp/mem; ps", Shell: "/bin/sh", UID: root}, nil)
	if !strings.HasPrefix(out, "in-memory\n") || !strings.Contains(out, "sleep 6262") {
		t.Fatalf("after restore memory and processes are not intact:\n%s", out)
	}
	if _, err := c.DeleteNode(ctx, "sr", host); err != nil {
		t.Fatal(err)
	}
	d.assertNothingLeft(t)
}

// TestSuspendedBeforeUpgradeRestores: a suspend writes a state directory
// with a manifest; a VM an earlier daemon suspended left one file,
// <hostname>.state, the bare migration stream, and a daemon of today
// restores it with its memory, then removes it.
func TestSuspendedBeforeUpgradeRestores(t *testing.T) {
	testenv.RequireE2E(t)
	t.Parallel()
	d := startDaemon(t, "su")
	c, ctx := d.client, context.Background()
	host := createReady(t, c, "su", api.CreateNodeRequest{Persistent: true}).Hostname
	execIn(t, c, host, &api.ExecRequest{Command: "echo before-upgrade > /tmp/mem", Shell: "/bin/sh", UID: u32(0)}, nil)
	if err := c.Suspend(ctx, host); err != nil {
		t.Fatalf("Suspend: %v", err)
	}
	state := filepath.Join(d.dataDir, "disks", host+".state")
	man, err := hypervisor.ReadManifest(state)
	if err != nil || man.Backend != "qemu" || man.Machine.VCPUs != 2 || man.Machine.MemoryBytes != 512<<20 {
		t.Fatalf("state directory after Suspend: manifest %+v, %v", man, err)
	}
	d.stop()

	// What an earlier daemon left: the migration stream alone, as a file.
	stream, ok := man.File(hypervisor.HoldsMemory)
	if !ok {
		t.Fatalf("manifest names no memory file: %+v", man.Files)
	}
	legacy := filepath.Join(d.dataDir, "disks", "legacy.tmp")
	if err := os.Rename(filepath.Join(state, stream), legacy); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(state); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(legacy, state); err != nil {
		t.Fatal(err)
	}

	d.start(filepath.Join(d.dataDir, "slicer.yaml"))
	c = d.client
	if err := c.Restore(ctx, host, "agent", 2*time.Minute); err != nil {
		t.Fatalf("Restore from the state file of an earlier daemon: %v", err)
	}
	if out, _, _ := execIn(t, c, host, &api.ExecRequest{Command: "cat", Args: []string{"/tmp/mem"}, UID: u32(0)}, nil); out != "before-upgrade\n" {
		t.Fatalf("after the restore /tmp/mem = %q, want the value from before the suspend", out)
	}
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Errorf("state file kept after the restore: %v", err)
	}
	if _, err := c.DeleteNode(ctx, "su", host); err != nil {
		t.Fatal(err)
	}
	d.assertNothingLeft(t)
}
