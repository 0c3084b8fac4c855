package e2e

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/openslicer/openslicer/api"
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
