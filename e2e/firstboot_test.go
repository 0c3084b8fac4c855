package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/client"
	"github.com/openslicer/openslicer/internal/testenv"
)

// TestUserdataAndStats: userdata runs once as root on first boot and
// wait=userdata waits for it; health reports it ran and its exit code; SSH
// keys land in the default user's authorized_keys; stats come from the guest.
func TestUserdataAndStats(t *testing.T) {
	testenv.RequireE2E(t)
	t.Parallel()
	d := startDaemon(t, "ud")
	c, ctx := d.client, context.Background()
	const key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAITestKeyOnly test@openslicer"
	node, err := c.CreateNode(ctx, "ud", api.CreateNodeRequest{
		Userdata: "#!/bin/sh\necho userdata-says-hi\nid -u > /root/ud-uid\necho $TARGET_USER > /root/ud-user\nexit 3\n",
		SSHKeys:  []string{key},
	}, client.CreateOptions{Wait: "userdata", Timeout: 3 * time.Minute})
	if err != nil {
		t.Fatalf("CreateNode wait=userdata: %v", err)
	}
	h, err := c.Health(ctx, node.Hostname)
	if err != nil || !h.UserdataRan || h.UserdataExitCode == nil || *h.UserdataExitCode != 3 {
		t.Fatalf("Health = %+v, %v; want userdata_ran with exit code 3", h, err)
	}
	out, _, _ := execIn(t, c, node.Hostname, &api.ExecRequest{Command: "cat /root/ud-uid /root/ud-user /home/ubuntu/.ssh/authorized_keys", Shell: "/bin/sh", UID: u32(0)}, nil)
	if out != "0\nslicer\n"+key+"\n" {
		t.Errorf("userdata uid, TARGET_USER and authorized_keys = %q", out)
	}
	logs, err := c.Logs(ctx, node.Hostname, 0)
	if err != nil || !strings.Contains(logs.Content, "userdata-says-hi") {
		t.Errorf("console log lacks the userdata output: %v\n%s", err, logs.Content)
	}

	stats, err := c.Stats(ctx, node.Hostname)
	if err != nil || len(stats) != 1 || stats[0].Snapshot == nil {
		t.Fatalf("Stats = %+v, %v", stats, err)
	}
	s := stats[0].Snapshot
	if s.TotalCPUS != 2 || s.TotalMemory == 0 || s.DiskSpaceTotal == 0 || s.Hostname != node.Hostname {
		t.Errorf("snapshot = %+v", s)
	}
	if all, err := c.Stats(ctx, ""); err != nil || len(all) != 1 {
		t.Errorf("Stats(all) = %+v, %v", all, err)
	}
	if _, err := c.DeleteNode(ctx, "ud", node.Hostname); err != nil {
		t.Fatal(err)
	}
	d.assertNothingLeft(t)
}
