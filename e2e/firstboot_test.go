package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
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
	if out != "0\nubuntu\n"+key+"\n" {
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

// sshKey returns an authorized_keys line of a made-up ed25519 key.
func sshKey(seed byte, comment string) string {
	var blob []byte
	for _, part := range [][]byte{[]byte("ssh-ed25519"), bytes.Repeat([]byte{seed}, 32)} {
		blob = binary.BigEndian.AppendUint32(blob, uint32(len(part)))
		blob = append(blob, part...)
	}
	return "ssh-ed25519 " + base64.StdEncoding.EncodeToString(blob) + " " + comment
}

// TestImportUser: the keys of the request's import_user and of the config's
// github_user, served here by a loopback stand-in for github.com, land in
// the default user's authorized_keys with ssh_keys. A user that does not
// exist is 400, a key source out of reach 503, both with nothing created.
func TestImportUser(t *testing.T) {
	testenv.RequireE2E(t)
	t.Parallel()
	keys := map[string]string{"/alice.keys": sshKey(1, "alice"), "/ops.keys": sshKey(2, "ops")}
	gh := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if k, ok := keys[r.URL.Path]; ok {
			fmt.Fprintln(w, k)
			return
		}
		http.NotFound(w, r)
	}))
	defer gh.Close()
	d := startDaemonWith(t, daemonSpec{
		groups: fmt.Sprintf(groupYAML, "iu"), extra: "  github_user: ops\n",
		env: []string{"SLICER_GITHUB_KEYS_URL=" + gh.URL},
	})
	c, ctx := d.client, context.Background()
	own := sshKey(3, "own")
	node := createReady(t, c, "iu", api.CreateNodeRequest{ImportUser: "alice", SSHKeys: []string{own}})
	out, _, _ := execIn(t, c, node.Hostname, &api.ExecRequest{Command: "cat /home/ubuntu/.ssh/authorized_keys", Shell: "/bin/sh", UID: u32(0)}, nil)
	if want := keys["/ops.keys"] + "\n" + keys["/alice.keys"] + "\n" + own + "\n"; out != want {
		t.Errorf("authorized_keys = %q, want github_user's, import_user's, then ssh_keys:\n%q", out, want)
	}

	_, err := c.CreateNode(ctx, "iu", api.CreateNodeRequest{ImportUser: "nobody"}, client.CreateOptions{})
	var ae *api.Error
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusBadRequest || !strings.Contains(ae.Message, "does not exist") {
		t.Errorf("import_user of a user that does not exist = %v, want 400 saying so", err)
	}
	gh.Close() // github.com out of reach
	_, err = c.CreateNode(ctx, "iu", api.CreateNodeRequest{ImportUser: "alice"}, client.CreateOptions{})
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusServiceUnavailable || !strings.Contains(ae.Message, "keys of GitHub user") {
		t.Errorf("import_user with the key source out of reach = %v, want 503 naming the user", err)
	}
	if nodes, err := c.ListNodes(ctx, client.ListOptions{}); err != nil || len(nodes) != 1 {
		t.Errorf("after the failed creates: %+v, %v; want only %s", nodes, err, node.Hostname)
	}
	if _, err := c.DeleteNode(ctx, "iu", node.Hostname); err != nil {
		t.Fatal(err)
	}
	d.assertNothingLeft(t)
}
