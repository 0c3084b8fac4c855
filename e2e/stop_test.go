package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openslicer/openslicer/api"
	slicerd "github.com/openslicer/openslicer/internal/daemon"
	"github.com/openslicer/openslicer/internal/store"
	"github.com/openslicer/openslicer/internal/testenv"
	"github.com/openslicer/openslicer/internal/vmstate"
)

// What a daemon stop does to VMs, by mode. Each test has a count VM or a
// persistent API VM (kept), and checks that nothing runs that the mode
// stops and that what should come back does.

// countGroupYAML is a group with one count VM.
const countGroupYAML = `  - name: %s
    count: 1
    vcpu: 1
    ram_mb: 256
    storage: image
    storage_size: 1G
`

// records reads the store of a daemon that has stopped.
func records(t *testing.T, d *daemon) map[string]store.VM {
	t.Helper()
	st, err := store.Open(filepath.Join(d.dataDir, ".slicer", "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	recs, err := st.List()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]store.VM{}
	for _, r := range recs {
		out[r.Hostname] = r
	}
	return out
}

// poweredOff reports whether the guest's kernel logged its power-off on
// the console, which it does only when it shut down itself.
func poweredOff(t *testing.T, d *daemon, host string) bool {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(d.dataDir, "logs", host+".txt"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Contains(string(data), "reboot: Power down")
}

// writeUnsynced writes a file in the guest without syncing it: a clean
// shutdown puts it on the disk (a kill may lose it).
func writeUnsynced(t *testing.T, d *daemon, host string) {
	t.Helper()
	execIn(t, d.client, host, &api.ExecRequest{Command: "echo kept > /root/unsynced", Shell: "/bin/sh", UID: u32(0)}, nil)
}

func readUnsynced(t *testing.T, d *daemon, host string) string {
	t.Helper()
	out, _, _ := execIn(t, d.client, host, &api.ExecRequest{Command: "cat /root/unsynced", Shell: "/bin/sh", UID: u32(0)}, nil)
	return out
}

// TestStopGraceful: with graceful_shutdown the guests power off on their
// own (their last writes reach the disk); the count VM comes back at the
// next start, the persistent API VM stays stopped until relaunched.
func TestStopGraceful(t *testing.T) {
	testenv.RequireE2E(t)
	t.Parallel()
	d := startDaemonWith(t, daemonSpec{groups: fmt.Sprintf(countGroupYAML, "sg"), graceful: true})
	c, ctx := d.client, context.Background()
	count := "sg-1"
	api1 := createReady(t, c, "sg", api.CreateNodeRequest{Persistent: true}).Hostname
	createReady(t, c, "sg", api.CreateNodeRequest{}) // ephemeral
	for _, h := range []string{count, api1} {
		writeUnsynced(t, d, h)
	}

	d.stop()
	if procs := qemuProcesses(d.dataDir); len(procs) != 0 {
		t.Fatalf("qemu processes after a graceful stop: %v", procs)
	}
	recs := records(t, d)
	if len(recs) != 2 || recs[count].State != vmstate.Stopped || recs[api1].State != vmstate.Stopped {
		t.Fatalf("records after stop: %+v; want %s and %s stopped, the ephemeral vm gone", recs, count, api1)
	}
	for _, h := range []string{count, api1} {
		if !poweredOff(t, d, h) {
			t.Errorf("%s did not power off by itself (no \"Power down\" on its console)", h)
		}
	}

	d.start(filepath.Join(d.dataDir, "slicer.yaml"))
	c = d.client
	waitStatus(t, c, count, api.StatusRunning)
	if n := nodeOf(t, c, api1); n.Status != api.StatusStopped {
		t.Errorf("persistent API vm after restart is %s, want Stopped until relaunched", n.Status)
	}
	if got := readUnsynced(t, d, count); got != "kept\n" {
		t.Errorf("count vm lost a write made before the graceful stop: %q", got)
	}
	if _, err := c.Relaunch(ctx, api1); err != nil {
		t.Fatalf("Relaunch: %v", err)
	}
	if got := readUnsynced(t, d, api1); got != "kept\n" {
		t.Errorf("persistent vm lost a write made before the graceful stop: %q", got)
	}
	if _, err := c.DeleteNode(ctx, "sg", api1); err != nil {
		t.Fatal(err)
	}
}

// TestStopKill: without graceful_shutdown every VM is killed at once; the
// persistent ones keep their disks and come back as with a graceful stop.
func TestStopKill(t *testing.T) {
	testenv.RequireE2E(t)
	t.Parallel()
	d := startDaemonYAML(t, fmt.Sprintf(countGroupYAML, "sk"))
	c, ctx := d.client, context.Background()
	count := "sk-1"
	api1 := createReady(t, c, "sk", api.CreateNodeRequest{Persistent: true}).Hostname
	execIn(t, c, api1, &api.ExecRequest{Command: "echo synced > /root/marker; sync", Shell: "/bin/sh", UID: u32(0)}, nil)
	waitStatus(t, c, count, api.StatusRunning)

	d.stop()
	if procs := qemuProcesses(d.dataDir); len(procs) != 0 {
		t.Fatalf("qemu processes after stop: %v", procs)
	}
	recs := records(t, d)
	if len(recs) != 2 || recs[count].State != vmstate.Stopped || recs[api1].State != vmstate.Stopped {
		t.Fatalf("records after stop: %+v; want %s and %s stopped", recs, count, api1)
	}
	for _, h := range []string{count, api1} {
		if poweredOff(t, d, h) {
			t.Errorf("%s powered off by itself; graceful_shutdown: false kills", h)
		}
		if _, err := os.Stat(filepath.Join(d.dataDir, "disks", h+".img")); err != nil {
			t.Errorf("disk of %s: %v", h, err)
		}
	}

	d.start(filepath.Join(d.dataDir, "slicer.yaml"))
	c = d.client
	waitStatus(t, c, count, api.StatusRunning)
	if out, _, code := execIn(t, c, count, &api.ExecRequest{Command: "true"}, nil); code != 0 {
		t.Errorf("count vm after restart: exec true = %q exit %d", out, code)
	}
	if n := nodeOf(t, c, api1); n.Status != api.StatusStopped {
		t.Errorf("persistent API vm after restart is %s, want Stopped", n.Status)
	}
	if _, err := c.Relaunch(ctx, api1); err != nil {
		t.Fatalf("Relaunch: %v", err)
	}
	out, _, _ := execIn(t, c, api1, &api.ExecRequest{Command: "cat /root/marker", Shell: "/bin/sh", UID: u32(0)}, nil)
	if out != "synced\n" {
		t.Errorf("after relaunch /root/marker = %q", out)
	}
	if _, err := c.DeleteNode(ctx, "sk", api1); err != nil {
		t.Fatal(err)
	}
}

// TestStopSuspend: slicer up --suspend-on-shutdown suspends the persistent
// VM (no process left, memory on disk) and the next start restores it with
// its processes and memory; the ephemeral VM is gone.
func TestStopSuspend(t *testing.T) {
	testenv.RequireE2E(t)
	t.Parallel()
	d := startDaemonWith(t, daemonSpec{groups: fmt.Sprintf(groupYAML, "ss"), args: []string{"--suspend-on-shutdown"}})
	c, ctx := d.client, context.Background()
	host := createReady(t, c, "ss", api.CreateNodeRequest{Persistent: true}).Hostname
	ephemeral := createReady(t, c, "ss", api.CreateNodeRequest{}).Hostname
	execIn(t, c, host, &api.ExecRequest{Command: "setsid sleep 7373 </dev/null >/dev/null 2>&1 & echo in-memory > /tmp/mem", Shell: "/bin/sh", UID: u32(0)}, nil)

	d.stop()
	if procs := qemuProcesses(d.dataDir); len(procs) != 0 {
		t.Fatalf("qemu processes after a suspending stop: %v", procs)
	}
	recs := records(t, d)
	if r, ok := recs[host]; len(recs) != 1 || !ok || r.State != vmstate.Suspended || r.RestoreAtStart != vmstate.Running {
		t.Fatalf("records after stop: %+v; want only %s, suspended, to restore running", recs, host)
	}
	if _, err := os.Stat(filepath.Join(d.dataDir, "disks", host+".state")); err != nil {
		t.Fatalf("state file of the suspended vm: %v", err)
	}
	if _, err := os.Stat(filepath.Join(d.dataDir, "disks", ephemeral+".img")); !os.IsNotExist(err) {
		t.Errorf("disk of the ephemeral vm after stop: %v", err)
	}

	d.start(filepath.Join(d.dataDir, "slicer.yaml"))
	c = d.client
	if n := nodeOf(t, c, host); n.Status != api.StatusRunning || n.State != api.StateRunning {
		t.Fatalf("after restart %s is %s/%s, want restored and running", host, n.Status, n.State)
	}
	out, _, _ := execIn(t, c, host, &api.ExecRequest{Command: "cat /tmp/mem; ps", Shell: "/bin/sh", UID: u32(0)}, nil)
	if !strings.HasPrefix(out, "in-memory\n") || !strings.Contains(out, "sleep 7373") {
		t.Fatalf("after the restore memory and processes are not intact:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(d.dataDir, "disks", host+".state")); !os.IsNotExist(err) {
		t.Errorf("state file kept after the restore: %v", err)
	}
	if _, err := c.DeleteNode(ctx, "ss", host); err != nil {
		t.Fatal(err)
	}
	d.assertNothingLeft(t)
}

// TestStopDetach: POST /daemon/shutdown?detach=true leaves the persistent VM
// running, and the next daemon re-attaches it with its processes; the
// ephemeral VM goes as on any stop.
func TestStopDetach(t *testing.T) {
	testenv.RequireE2E(t)
	t.Parallel()
	d := startDaemon(t, "sd")
	c, ctx := d.client, context.Background()
	host := createReady(t, c, "sd", api.CreateNodeRequest{Persistent: true}).Hostname
	ephemeral := createReady(t, c, "sd", api.CreateNodeRequest{}).Hostname
	execIn(t, c, host, &api.ExecRequest{Command: "setsid sleep 8484 </dev/null >/dev/null 2>&1 &", Shell: "/bin/sh", UID: u32(0)}, nil)

	if err := c.DetachDaemon(ctx); err != nil {
		t.Fatalf("DetachDaemon: %v", err)
	}
	if err := d.wait(); err != nil {
		t.Fatalf("daemon exited with %v after a detach", err)
	}
	if procs := qemuProcesses(d.dataDir); len(procs) != 1 {
		t.Fatalf("after a detach %d qemu processes, want the persistent vm's 1", len(procs))
	}
	if recs := records(t, d); len(recs) != 1 || recs[host].State != vmstate.Running {
		t.Fatalf("records after a detach: %+v; want only %s, running", recs, host)
	}
	if _, err := os.Stat(filepath.Join(d.dataDir, "disks", ephemeral+".img")); !os.IsNotExist(err) {
		t.Errorf("disk of the ephemeral vm after a detach: %v", err)
	}

	d.start(filepath.Join(d.dataDir, "slicer.yaml"))
	c = d.client
	out, _, _ := execIn(t, c, host, &api.ExecRequest{Command: "ps", UID: u32(0)}, nil)
	if !strings.Contains(out, "sleep 8484") {
		t.Fatalf("after re-attach the process started before the detach is gone:\n%s", out)
	}
	if _, err := c.DeleteNode(ctx, "sd", host); err != nil {
		t.Fatal(err)
	}
	d.assertNothingLeft(t)
}

// TestDaemonsInTwoDirectories: two daemons started without --data-dir in
// two working directories, with the same group (so both have "od-1"), run
// their count VMs side by side; stopping one leaves nothing of it running
// and does not touch the other's. Before VM sockets lived in
// /run/slicer/<id of the directory>, the second found the first's qemu in
// /run/slicer/od-1 ("qemu pid … already runs") and had no count VM.
func TestDaemonsInTwoDirectories(t *testing.T) {
	testenv.RequireE2E(t)
	testenv.RequireRoot(t)
	t.Parallel()
	spec := daemonSpec{groups: fmt.Sprintf(countGroupYAML, "od"), defaultPaths: true, noAuth: true}
	a, b := startDaemonWith(t, spec), startDaemonWith(t, spec)
	for _, d := range []*daemon{a, b} {
		t.Cleanup(func() { os.RemoveAll(slicerd.ResolvePaths("", d.dataDir).Run) })
	}
	t.Cleanup(func() { os.Remove("/var/log/slicer/od-1.txt") })
	for _, d := range []*daemon{a, b} {
		waitStatus(t, d.client, "od-1", api.StatusRunning)
		if out, _, code := execIn(t, d.client, "od-1", &api.ExecRequest{Command: "true"}, nil); code != 0 {
			t.Fatalf("od-1 of %s: exec true = %q exit %d", d.dataDir, out, code)
		}
	}
	a.stop()
	if procs := qemuProcesses(a.dataDir); len(procs) != 0 {
		t.Errorf("qemu processes of the stopped daemon: %v", procs)
	}
	if out, _, code := execIn(t, b.client, "od-1", &api.ExecRequest{Command: "true"}, nil); code != 0 {
		t.Errorf("the other daemon's od-1 after the first stopped: exec true = %q exit %d", out, code)
	}
}
