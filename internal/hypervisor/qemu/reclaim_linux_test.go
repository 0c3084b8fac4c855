package qemu

import (
	"context"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
)

// fakeQemu starts a process whose command line names runDir's pidfile, as
// a qemu of that run directory does.
func fakeQemu(t *testing.T, runDir string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sh", "-c", "while :; do sleep 0.1; done", "-pidfile", filepath.Join(runDir, pidFile))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd
}

// Reclaim kills the processes of a start cut short, which have no handle:
// every process of the run directory, and no other.
func TestReclaimKillsEveryProcessOfRunDir(t *testing.T) {
	dir := t.TempDir()
	mine, other := filepath.Join(dir, "vm-1"), filepath.Join(dir, "vm-2")
	a, b, c := fakeQemu(t, mine), fakeQemu(t, mine), fakeQemu(t, other)
	// (A shell about to run sleep is briefly two processes of the run dir.)
	if pids := processesIn(mine); !slices.Contains(pids, a.Process.Pid) || !slices.Contains(pids, b.Process.Pid) || slices.Contains(pids, c.Process.Pid) {
		t.Fatalf("processesIn(%s) = %v, want %d and %d, not %d", mine, pids, a.Process.Pid, b.Process.Pid, c.Process.Pid)
	}
	if err := New(nil).Reclaim(context.Background(), mine); err != nil {
		t.Fatalf("Reclaim: %v", err)
	}
	for _, cmd := range []*exec.Cmd{a, b} {
		if err := cmd.Wait(); err == nil {
			t.Errorf("pid %d of the reclaimed run dir exited cleanly, want killed", cmd.Process.Pid)
		}
	}
	if pids := processesIn(other); !slices.Contains(pids, c.Process.Pid) {
		t.Errorf("processes of the other run dir after Reclaim: %v, want %d untouched", pids, c.Process.Pid)
	}
	if pids := processesIn(mine); len(pids) != 0 {
		t.Errorf("processes of the reclaimed run dir left: %v", pids)
	}
	if err := New(nil).Reclaim(context.Background(), mine); err != nil {
		t.Errorf("Reclaim with nothing left: %v", err)
	}
	if err := New(nil).Reclaim(context.Background(), "relative"); err == nil {
		t.Error("Reclaim of a relative run dir succeeded")
	}
}
