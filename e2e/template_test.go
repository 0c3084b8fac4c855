package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/client"
	"github.com/openslicer/openslicer/internal/testenv"
)

// snapshotGroupYAML is groupYAML with snapshot: true.
const snapshotGroupYAML = `  - name: %s
    count: 0
    vcpu: 1
    ram_mb: 256
    storage: image
    storage_size: 1G
    snapshot: true
`

// TestSnapshotTemplate: two creates of a snapshot group restore one
// template (one template directory; both VMs' disks over its layer) and
// each answers exec under its own hostname, with /dev/urandom giving
// each different bytes; a file written in one is not seen in the other;
// after a restart of the daemon the template is reused, not rebuilt;
// once everything is deleted, only the template is left, and a daemon
// without the snapshot group removes it at start.
func TestSnapshotTemplate(t *testing.T) {
	testenv.RequireE2E(t)
	d := startDaemonYAML(t, strings.ReplaceAll(snapshotGroupYAML, "%s", "tp"))
	c, ctx := d.client, context.Background()

	var hosts, randoms []string
	for range 2 {
		h := createReady(t, c, "tp", api.CreateNodeRequest{}).Hostname
		hosts = append(hosts, h)
		name, _, code := execIn(t, c, h, &api.ExecRequest{Command: "hostname"}, nil)
		if code != 0 || strings.TrimSpace(name) != h {
			t.Errorf("%s: hostname answers %q (exit %d)", h, name, code)
		}
		r, _, code := execIn(t, c, h, &api.ExecRequest{Shell: "/bin/sh", Command: "head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n'"}, nil)
		if code != 0 || len(r) != 64 {
			t.Fatalf("%s: 32 bytes of /dev/urandom read as %q (exit %d)", h, r, code)
		}
		randoms = append(randoms, r)
	}
	if randoms[0] == randoms[1] {
		t.Errorf("two clones of one template read the same 32 bytes of /dev/urandom: %s", randoms[0])
	}
	tpls := templateDirs(t, d)
	if len(tpls) != 1 {
		t.Fatalf("template directories %v, want one", tpls)
	}
	execIn(t, c, hosts[0], &api.ExecRequest{Shell: "/bin/sh", UID: u32(0), Command: "echo one > /root/mine; sync"}, nil)
	if _, _, code := execIn(t, c, hosts[1], &api.ExecRequest{Shell: "/bin/sh", UID: u32(0), Command: "test -e /root/mine"}, nil); code == 0 {
		t.Error("a file written in one clone is seen in the other")
	}

	// A restarted daemon restores from the same template.
	d.stop()
	d.start(filepath.Join(d.dataDir, "slicer.yaml"))
	c = d.client
	third := createReady(t, c, "tp", api.CreateNodeRequest{}).Hostname
	if name, _, _ := execIn(t, c, third, &api.ExecRequest{Command: "hostname"}, nil); strings.TrimSpace(name) != third {
		t.Errorf("%s after a restart: hostname %q", third, name)
	}
	if got := templateDirs(t, d); len(got) != 1 || got[0] != tpls[0] {
		t.Errorf("template directories after a restart %v, want %v kept", got, tpls)
	}
	for _, h := range []string{third} {
		if _, err := c.DeleteNode(ctx, "tp", h); err != nil {
			t.Fatal(err)
		}
	}
	d.assertNothingLeft(t)

	// Without the snapshot group, the next daemon removes the template.
	d.stop()
	cfg := filepath.Join(d.dataDir, "slicer.yaml")
	data, _ := os.ReadFile(cfg)
	if err := os.WriteFile(cfg, []byte(strings.Replace(string(data), "    snapshot: true\n", "", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	d.start(cfg)
	waitUntil(t, time.Minute, func() bool { return len(templateDirs(t, d)) == 0 })
}

// templateDirs lists the template directories of d.
func templateDirs(t *testing.T, d *daemon) []string {
	t.Helper()
	ents, _ := os.ReadDir(filepath.Join(d.dataDir, "templates"))
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

func waitUntil(t *testing.T, bound time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s", bound)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestCrashDuringTemplate kills the daemon (SIGKILL) while the first
// create of a snapshot group builds the template, at points spread over
// the build, and starts it again each time. After every restart no qemu
// process is left, and the templates directory holds nothing or one
// whole template (its state's manifest and its disk layer); at the end a
// create restores from a template and everything but it is gone once
// deleted.
func TestCrashDuringTemplate(t *testing.T) {
	testenv.RequireE2E(t)
	d := startDaemonYAML(t, strings.ReplaceAll(snapshotGroupYAML, "%s", "tc"))
	cfg := filepath.Join(d.dataDir, "slicer.yaml")
	for _, delay := range []time.Duration{300 * time.Millisecond, 1500 * time.Millisecond, 3 * time.Second, 5 * time.Second} {
		if len(templateDirs(t, d)) > 0 {
			break // a build completed before its kill: nothing more to cut short
		}
		c := d.client
		go c.CreateNode(context.Background(), "tc", api.CreateNodeRequest{}, client.CreateOptions{Wait: "agent", Timeout: 3 * time.Minute})
		time.Sleep(delay)
		d.cmd.Process.Kill()
		d.wait()
		d.start(cfg)
		if procs := qemuProcesses(d.dataDir); len(procs) > 0 {
			t.Errorf("killed after %s: qemu processes left after the restart: %v", delay, procs)
		}
		dirs := templateDirs(t, d)
		t.Logf("killed after %s: template dirs after the restart %v", delay, dirs)
		for _, dir := range dirs {
			for _, f := range []string{"state/manifest.json", "disk.img"} {
				if _, err := os.Stat(filepath.Join(d.dataDir, "templates", dir, f)); err != nil {
					t.Errorf("killed after %s: template %s kept without %s", delay, dir, f)
				}
			}
		}
		if len(dirs) > 1 {
			t.Errorf("killed after %s: %d templates, want at most one", delay, len(dirs))
		}
	}
	h := createReady(t, d.client, "tc", api.CreateNodeRequest{}).Hostname
	if name, _, _ := execIn(t, d.client, h, &api.ExecRequest{Command: "hostname"}, nil); strings.TrimSpace(name) != h {
		t.Errorf("hostname %q, want %s", name, h)
	}
	if _, err := d.client.DeleteNode(context.Background(), "tc", h); err != nil {
		t.Fatal(err)
	}
	d.assertNothingLeft(t)
	if n := len(templateDirs(t, d)); n != 1 {
		t.Errorf("%d templates at the end, want one", n)
	}
}
