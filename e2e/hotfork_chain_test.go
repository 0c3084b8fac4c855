package e2e

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/client"
	"github.com/openslicer/openslicer/internal/hypervisor"
	"github.com/openslicer/openslicer/internal/testenv"
)

// TestHotForkTwiceThenSuspend: the source of a memory commit goes on like
// any running VM. After a memory commit, a file written, and a second
// memory commit (both accepted while the VM runs), a fork of the second
// commit has the process and the files from before the first commit and
// the file written between the two. The first commit cannot be deleted
// while the second is over it. The source is then suspended (its state
// names the disk it writes now, the second commit's overlay) and
// restored with its process and files, its disk still writable. At the
// end nothing is left.
func TestHotForkTwiceThenSuspend(t *testing.T) {
	testenv.RequireE2E(t)
	d := startDaemonYAML(t, hotGroupYAML)
	c, ctx := d.client, context.Background()
	root := u32(0)

	src := createReady(t, c, "hf", api.CreateNodeRequest{}).Hostname
	if _, errOut, code := execIn(t, c, src, &api.ExecRequest{Shell: "/bin/sh", UID: root, Command: hotSetup}, nil); code != 0 {
		t.Fatalf("set up the source: exit %d: %s", code, errOut)
	}
	first, err := c.CommitVMWithOptions(ctx, src, api.CommitVMRequest{Mode: api.CommitModeMemory})
	if err != nil {
		t.Fatalf("first memory commit: %v", err)
	}
	if _, errOut, code := execIn(t, c, src, &api.ExecRequest{Shell: "/bin/sh", UID: root, Command: "echo between > /root/between; sync"}, nil); code != 0 {
		t.Fatalf("write between the commits: exit %d: %s", code, errOut)
	}
	second, err := c.CommitVMWithOptions(ctx, src, api.CommitVMRequest{Mode: api.CommitModeMemory})
	if err != nil {
		t.Fatalf("second memory commit of the running source: %v", err)
	}
	if second.Mode != api.CommitModeMemory || second.ParentStatus != api.StateRunning {
		t.Errorf("second commit answer %+v", second)
	}
	const wantState = "sleep 1000 \nhot-data\ndisk-data\nbetween\n"
	state := hotState + "; cat /root/between"
	if out, errOut, code := execIn(t, c, src, &api.ExecRequest{Shell: "/bin/sh", UID: root, Command: state}, nil); code != 0 || out != wantState {
		t.Errorf("source after its second memory commit: exit %d\n%s%s", code, out, errOut)
	}

	f, err := c.ForkCommittedVM(ctx, second.CommitID, api.ForkVMRequest{}, client.ForkOptions{Wait: client.WaitAgent, Timeout: 3 * time.Minute})
	if err != nil {
		t.Fatalf("fork of the second commit: %v", err)
	}
	if out, errOut, code := execIn(t, c, f.Hostname, &api.ExecRequest{Shell: "/bin/sh", UID: root, Command: state}, nil); code != 0 || out != wantState {
		t.Errorf("%s, fork of the second commit: the source's process and files: exit %d\n%s%s", f.Hostname, code, out, errOut)
	}
	if _, err := c.DeleteCommit(ctx, first.CommitID); !errors.Is(err, api.ErrConflict) || !strings.Contains(err.Error(), second.CommitID) {
		t.Errorf("DeleteCommit of the first commit = %v, want 409 naming the second, %s", err, second.CommitID)
	}
	if _, err := c.DeleteNode(ctx, "hf", f.Hostname); err != nil {
		t.Fatal(err)
	}

	if err := c.Suspend(ctx, src); err != nil {
		t.Fatalf("suspend after two memory commits: %v", err)
	}
	waitStatus(t, c, src, api.StatusPaused)
	man, err := hypervisor.ReadManifest(filepath.Join(d.dataDir, "disks", src+".state"))
	if err != nil || len(man.Machine.Disks) != 1 || !strings.HasSuffix(man.Machine.Disks[0].Path, "."+second.CommitID+".qcow2") {
		t.Errorf("suspended state: disks %+v (%v), want the second commit's overlay", man.Machine.Disks, err)
	}
	if err := c.Restore(ctx, src, "agent", 2*time.Minute); err != nil {
		t.Fatalf("restore after two memory commits: %v", err)
	}
	out, errOut, code := execIn(t, c, src, &api.ExecRequest{Shell: "/bin/sh", UID: root, Command: state + "; echo after > /root/after; sync; cat /root/after"}, nil)
	if code != 0 || out != wantState+"after\n" {
		t.Errorf("source restored: its process and files, and a write: exit %d\n%s%s", code, out, errOut)
	}

	if _, err := c.DeleteNode(ctx, "hf", src); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{second.CommitID, first.CommitID} {
		if _, err := c.DeleteCommit(ctx, id); err != nil {
			t.Fatalf("DeleteCommit %s: %v", id, err)
		}
	}
	d.assertNothingLeft(t)
}
