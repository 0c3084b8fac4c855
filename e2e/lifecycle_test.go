package e2e

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/client"
	"github.com/openslicer/openslicer/internal/testenv"
)

func waitStatus(t *testing.T, c *client.Client, host, want string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		nodes, err := c.ListNodes(context.Background(), client.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		got := "gone"
		for _, n := range nodes {
			if n.Hostname == host {
				got = n.Status
			}
		}
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("vm %s is %s after 1m, want %s", host, got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// nodeOf returns host as GET /nodes shows it.
func nodeOf(t *testing.T, c *client.Client, host string) api.Node {
	t.Helper()
	nodes, err := c.ListNodes(context.Background(), client.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if n.Hostname == host {
			return n
		}
	}
	t.Fatalf("vm %s is not listed", host)
	return api.Node{}
}

// TestPauseAndShutdown: a paused VM refuses guest operations with 409 and
// lists as Paused; an ephemeral VM that is shut down is reaped with its disk.
func TestPauseAndShutdown(t *testing.T) {
	testenv.RequireE2E(t)
	t.Parallel()
	d := startDaemon(t, "pz")
	c, ctx := d.client, context.Background()
	node := createReady(t, c, "pz", api.CreateNodeRequest{})
	if err := c.Pause(ctx, node.Hostname); err != nil {
		t.Fatalf("Pause: %v", err)
	}
	waitStatus(t, c, node.Hostname, api.StatusPaused)
	if _, err := c.ExecBuffered(ctx, node.Hostname, &api.ExecRequest{Command: "true"}); !errors.Is(err, api.ErrConflict) {
		t.Errorf("exec while paused = %v, want 409", err)
	}
	if err := c.Resume(ctx, node.Hostname); err != nil {
		t.Fatalf("Resume: %v", err)
	}
	if out, _, code := execIn(t, c, node.Hostname, &api.ExecRequest{Command: "echo", Args: []string{"back"}}, nil); out != "back\n" || code != 0 {
		t.Errorf("exec after resume = %q %d", out, code)
	}
	if err := c.Shutdown(ctx, node.Hostname, "shutdown"); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	waitStatus(t, c, node.Hostname, "gone")
	d.assertNothingLeft(t)
}

// TestPersistent: a persistent VM keeps its disk when stopped, and
// relaunches from it. (What a daemon stop or crash does to it: stop_test.go
// and crash_test.go.)
func TestPersistent(t *testing.T) {
	testenv.RequireE2E(t)
	t.Parallel()
	d := startDaemon(t, "ps")
	c, ctx := d.client, context.Background()
	node := createReady(t, c, "ps", api.CreateNodeRequest{Persistent: true})
	host := node.Hostname
	root := u32(0)
	execIn(t, c, host, &api.ExecRequest{Command: "echo kept > /root/marker; sync", Shell: "/bin/sh", UID: root}, nil)

	if err := c.Shutdown(ctx, host, "shutdown"); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, c, host, api.StatusStopped)
	if len(qemuProcesses(d.dataDir)) != 0 {
		t.Fatal("stopped vm still has a qemu process")
	}
	if _, err := c.Relaunch(ctx, host); err != nil {
		t.Fatalf("Relaunch: %v", err)
	}
	if _, err := c.Relaunch(ctx, host); !errors.Is(err, api.ErrConflict) {
		t.Errorf("Relaunch of a running vm = %v, want 409", err)
	}
	out, _, _ := execIn(t, c, host, &api.ExecRequest{Command: "cat", Args: []string{"/root/marker"}, UID: root}, nil)
	if out != "kept\n" {
		t.Errorf("after relaunch /root/marker = %q, want the file written before", out)
	}
	if _, err := c.DeleteNode(ctx, "ps", host); err != nil {
		t.Fatal(err)
	}
	d.assertNothingLeft(t)
}
