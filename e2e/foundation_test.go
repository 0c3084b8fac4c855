package e2e

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/client"
	"github.com/openslicer/openslicer/internal/testenv"
)

func u32(v uint32) *uint32 { return &v }

// exec runs a command and returns stdout, stderr and the exit code.
func execIn(t *testing.T, c *client.Client, host string, req *api.ExecRequest, stdin []byte) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var in *bytes.Reader
	if stdin != nil {
		req.Stdin = true
		in = bytes.NewReader(stdin)
	}
	var stream *client.ExecStream
	var err error
	if in != nil {
		stream, err = c.Exec(ctx, host, req, in)
	} else {
		stream, err = c.Exec(ctx, host, req, nil)
	}
	if err != nil {
		t.Fatalf("Exec(%s %v): %v", req.Command, req.Args, err)
	}
	defer stream.Close()
	var stdout, stderr bytes.Buffer
	code, err := stream.Copy(&stdout, &stderr)
	var fe *client.FrameError
	if errors.As(err, &fe) {
		return stdout.String(), fe.Message, fe.ExitCode // the command could not start
	}
	if err != nil {
		t.Fatalf("Exec(%s %v) stream: %v", req.Command, req.Args, err)
	}
	return stdout.String(), stderr.String(), code
}

// TestCreateExecDelete is the main path: boot a VM, run commands in it with
// streamed output, and delete it, leaving nothing behind.
func TestCreateExecDelete(t *testing.T) {
	testenv.RequireE2E(t)
	d := startDaemon(t, "sbox", "other")
	c := d.client
	ctx := context.Background()

	node, err := c.CreateNode(ctx, "sbox", api.CreateNodeRequest{Tags: []string{"user=alice", "job=1"}, RamBytes: 256 << 20},
		client.CreateOptions{Wait: "agent", Timeout: 3 * time.Minute})
	if err != nil {
		d.dumpLog()
		t.Fatalf("CreateNode: %v", err)
	}
	if node.Hostname != "sbox-1" || node.HostGroup != "sbox" {
		t.Fatalf("created %+v, want sbox-1 in sbox", node)
	}

	t.Run("uname streams Linux", func(t *testing.T) {
		out, _, code := execIn(t, c, node.Hostname, &api.ExecRequest{Command: "uname", Args: []string{"-a"}, Stdio: api.StdioBase64}, nil)
		if code != 0 || !strings.HasPrefix(out, "Linux sbox-1 ") {
			t.Fatalf("uname -a = %q exit %d, want Linux sbox-1 ... exit 0", out, code)
		}
	})
	t.Run("exit code arrives", func(t *testing.T) {
		_, stderr, code := execIn(t, c, node.Hostname, &api.ExecRequest{Command: "echo oops >&2; exit 7", Shell: "/bin/sh"}, nil)
		if code != 7 || stderr != "oops\n" {
			t.Fatalf("exit 7 = code %d stderr %q", code, stderr)
		}
	})
	t.Run("missing command", func(t *testing.T) {
		_, msg, code := execIn(t, c, node.Hostname, &api.ExecRequest{Command: "no-such-command"}, nil)
		if code != 127 || !strings.Contains(msg, "no-such-command") {
			t.Fatalf("missing command: exit %d message %q, want 127 naming the command", code, msg)
		}
	})
	t.Run("stdin reaches the process", func(t *testing.T) {
		payload := bytes.Repeat([]byte("hello stdin\n"), 5000)
		out, _, code := execIn(t, c, node.Hostname, &api.ExecRequest{Command: "wc", Args: []string{"-l"}, UID: u32(0)}, payload)
		if code != 0 || strings.TrimSpace(out) != "5000" {
			t.Fatalf("wc -l of 5000 lines = %q exit %d", out, code)
		}
	})
	t.Run("uid and cwd", func(t *testing.T) {
		out, _, _ := execIn(t, c, node.Hostname, &api.ExecRequest{Command: "id -u; pwd", Shell: "/bin/sh"}, nil)
		if out != "1000\n/home/ubuntu\n" {
			t.Errorf("default user: got %q, want uid 1000 in /home/ubuntu", out)
		}
		out, _, _ = execIn(t, c, node.Hostname, &api.ExecRequest{Command: "id -u; pwd", Shell: "/bin/sh", UID: u32(0), Cwd: "/tmp"}, nil)
		if out != "0\n/tmp\n" {
			t.Errorf("uid=0 cwd=/tmp: got %q", out)
		}
	})
	t.Run("hang-up kills the process group", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		stream, err := c.Exec(ctx, node.Hostname, &api.ExecRequest{Command: "sleep 321 & sleep 321", Shell: "/bin/sh", UID: u32(0)}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if f, err := stream.Next(); err != nil || f.Type != api.FrameStarted {
			t.Fatalf("first frame = %+v, %v; want started", f, err)
		}
		cancel()
		stream.Close()
		deadline := time.Now().Add(30 * time.Second)
		for {
			out, _, _ := execIn(t, c, node.Hostname, &api.ExecRequest{Command: "ps", UID: u32(0)}, nil)
			if !strings.Contains(out, "sleep 321") {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("processes of a cancelled exec still run:\n%s", out)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	t.Run("buffered", func(t *testing.T) {
		res, err := c.ExecBuffered(ctx, node.Hostname, &api.ExecRequest{Command: "echo hi; exit 3", Shell: "/bin/sh"})
		if err != nil || res.Stdout != "hi\n" || res.ExitCode != 3 {
			t.Fatalf("ExecBuffered = %+v, %v", res, err)
		}
	})
	t.Run("tag filters", func(t *testing.T) {
		for _, tc := range []struct {
			opt  client.ListOptions
			want int
		}{
			{client.ListOptions{Tag: "user=alice"}, 1},
			{client.ListOptions{Tag: "user=ali"}, 0},
			{client.ListOptions{TagPrefix: "user="}, 1},
			{client.ListOptions{TagPrefix: "team="}, 0},
		} {
			all, err := c.ListNodes(ctx, tc.opt)
			if err != nil || len(all) != tc.want {
				t.Errorf("ListNodes(%+v) = %d nodes, %v; want %d", tc.opt, len(all), err, tc.want)
			}
			grp, err := c.GroupNodes(ctx, "sbox", tc.opt)
			if err != nil || len(grp) != tc.want {
				t.Errorf("GroupNodes(sbox, %+v) = %d nodes, %v; want %d", tc.opt, len(grp), err, tc.want)
			}
		}
		if other, err := c.GroupNodes(ctx, "other", client.ListOptions{}); err != nil || len(other) != 0 {
			t.Errorf("GroupNodes(other) = %v, %v; want none", other, err)
		}
	})
	t.Run("health and logs", func(t *testing.T) {
		h, err := c.Health(ctx, node.Hostname)
		if err != nil || h.AgentUptime <= 0 || h.AgentVersion == "" {
			t.Errorf("Health = %+v, %v", h, err)
		}
		logs, err := c.Logs(ctx, node.Hostname, 0)
		if err != nil || logs.Content == "" {
			t.Errorf("Logs = %+v, %v; want console output", logs, err)
		}
	})

	del, err := c.DeleteNode(ctx, "sbox", node.Hostname)
	if err != nil || del.DiskRemoved != "true" {
		t.Fatalf("DeleteNode = %+v, %v", del, err)
	}
	if nodes, err := c.ListNodes(ctx, client.ListOptions{}); err != nil || len(nodes) != 0 {
		t.Fatalf("after delete ListNodes = %v, %v; want none", nodes, err)
	}
	if _, err := c.Health(ctx, node.Hostname); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("Health after delete = %v, want 404", err)
	}
	d.assertNothingLeft(t)
}

// TestErrors checks the status codes of bad requests, and that a create
// whose wait times out leaves nothing behind.
func TestErrors(t *testing.T) {
	testenv.RequireE2E(t)
	d := startDaemon(t, "sbox")
	c := d.client
	ctx := context.Background()

	wantStatus := func(name string, err error, status int) {
		t.Helper()
		var ae *api.Error
		if !errors.As(err, &ae) || ae.StatusCode != status {
			t.Errorf("%s: got %v, want status %d", name, err, status)
		}
	}
	_, err := c.CreateNode(ctx, "nope", api.CreateNodeRequest{}, client.CreateOptions{})
	wantStatus("unknown group", err, http.StatusNotFound)
	_, err = c.CreateNode(ctx, "sbox", api.CreateNodeRequest{CPUs: 3}, client.CreateOptions{})
	wantStatus("cpus above the group's", err, http.StatusBadRequest)
	_, err = c.CreateNode(ctx, "sbox", api.CreateNodeRequest{RamBytes: 1 << 40}, client.CreateOptions{})
	wantStatus("ram above the group's", err, http.StatusBadRequest)
	_, err = c.Exec(ctx, "sbox-99", &api.ExecRequest{Command: "true"}, nil)
	wantStatus("exec on unknown vm", err, http.StatusNotFound)
	_, err = c.DeleteNode(ctx, "sbox", "sbox-99")
	wantStatus("delete unknown vm", err, http.StatusNotFound)
	_, err = client.New(d.socket, "wrong-token").ListNodes(ctx, client.ListOptions{})
	wantStatus("wrong token", err, http.StatusUnauthorized)

	// Secrets through the daemon: 201, then 409 for the same name (the Go
	// SDK's ErrSecretExists), and the list carries no value.
	if err := c.CreateSecret(ctx, api.CreateSecretRequest{Name: "token", Data: "aHVudGVyMg=="}); err != nil {
		t.Errorf("CreateSecret: %v", err)
	}
	err = c.CreateSecret(ctx, api.CreateSecretRequest{Name: "token", Data: "eA=="})
	wantStatus("duplicate secret", err, http.StatusConflict)
	if list, err := c.ListSecrets(ctx); err != nil || len(list) != 1 || list[0].Size != 7 {
		t.Errorf("ListSecrets = %+v, %v", list, err)
	}

	_, err = c.CreateNode(ctx, "sbox", api.CreateNodeRequest{}, client.CreateOptions{Wait: "agent", Timeout: time.Millisecond})
	wantStatus("wait timeout", err, http.StatusRequestTimeout)
	if nodes, err := c.ListNodes(ctx, client.ListOptions{}); err != nil || len(nodes) != 0 {
		t.Errorf("after a timed-out create ListNodes = %v, %v; want none", nodes, err)
	}
	d.assertNothingLeft(t)
}
