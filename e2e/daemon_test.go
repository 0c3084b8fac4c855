package e2e

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/client"
	"github.com/openslicer/openslicer/internal/store"
	"github.com/openslicer/openslicer/internal/testenv"
)

// TestCLI drives a VM through the slicer CLI binary: launch, exec with piped
// stdin and a remote exit code, list, delete.
func TestCLI(t *testing.T) {
	testenv.RequireE2E(t)
	t.Parallel() // also shows two daemons running side by side
	d := startDaemon(t, "cli")
	slicer := func(stdin string, args ...string) (string, int) { return d.cli(t, stdin, args...) }

	out, code := slicer("", "vm", "add", "cli", "--wait", "--tag", "role=ci")
	if code != 0 || !strings.Contains(out, "Hostname: cli-1") {
		t.Fatalf("vm add = %q exit %d", out, code)
	}
	out, code = slicer("piped input\n", "vm", "exec", "cli-1", "--", "sh", "-c", "cat; exit 4")
	if code != 4 || out != "piped input\n" {
		t.Errorf("vm exec with stdin = %q exit %d, want the input back and exit 4", out, code)
	}
	out, code = slicer("", "vm", "list")
	if code != 0 || !strings.Contains(out, "cli-1") || !strings.Contains(out, "role=ci") {
		t.Errorf("vm list = %q exit %d", out, code)
	}
	if _, code = slicer("", "vm", "delete", "cli-1"); code != 0 {
		t.Errorf("vm delete exit %d", code)
	}
	d.assertNothingLeft(t)
}

// TestRestart checks that a daemon restart reclaims ephemeral VMs, leaves no
// state behind, and never hands out a name twice.
func TestRestart(t *testing.T) {
	testenv.RequireE2E(t)
	t.Parallel()
	d := startDaemon(t, "rs")
	ctx := context.Background()
	first := createReady(t, d.client, "rs", api.CreateNodeRequest{})

	// POST /daemon/shutdown answers 202 and stops the daemon as SIGTERM
	// does: ephemeral VMs go with it.
	if err := d.client.ShutdownDaemon(ctx); err != nil {
		t.Fatalf("ShutdownDaemon: %v", err)
	}
	if err := d.wait(); err != nil {
		t.Fatalf("daemon exited with %v after POST /daemon/shutdown", err)
	}
	d.assertNothingLeft(t)
	st, err := store.Open(filepath.Join(d.dataDir, ".slicer", "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	recs, err := st.List()
	st.Close()
	if err != nil || len(recs) != 0 {
		t.Fatalf("store after stop = %+v, %v; want no records", recs, err)
	}

	d.start(filepath.Join(d.dataDir, "slicer.yaml"))
	second, err := d.client.CreateNode(ctx, "rs", api.CreateNodeRequest{}, client.CreateOptions{})
	if err != nil {
		t.Fatalf("CreateNode after restart: %v", err)
	}
	if first.Hostname != "rs-1" || second.Hostname != "rs-2" {
		t.Fatalf("names %s then %s, want rs-1 then rs-2", first.Hostname, second.Hostname)
	}
	if _, err := d.client.DeleteNode(ctx, "rs", second.Hostname); err != nil {
		t.Fatal(err)
	}
	d.assertNothingLeft(t)
}
