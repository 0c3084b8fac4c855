package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/client"
	"github.com/openslicer/openslicer/internal/testenv"
)

// TestGuestOps drives the file-system, background-exec, shell and
// port-forward endpoints of one real VM through the public client.
func TestGuestOps(t *testing.T) {
	testenv.RequireE2E(t)
	t.Parallel()
	d := startDaemon(t, "ops")
	c := d.client
	vm := createReady(t, c, "ops", api.CreateNodeRequest{}).Hostname
	t.Run("fs", func(t *testing.T) { testFS(t, c, vm) })
	t.Run("watch", func(t *testing.T) { testWatch(t, c, vm) })
	t.Run("background exec", func(t *testing.T) { testBackground(t, c, vm) })
	t.Run("background exec cli", func(t *testing.T) {
		out, code := d.cli(t, "", "vm", "bg", "exec", vm, "--json", "--", "sh", "-c", "echo bg-out; exit 5")
		var launched api.ExecBackgroundResponse
		if err := json.Unmarshal([]byte(out), &launched); code != 0 || err != nil || launched.ExecID == "" {
			t.Fatalf("vm bg exec --json = %q exit %d (%v)", out, code, err)
		}
		if out, code := d.cli(t, "", "vm", "bg", "wait", vm, launched.ExecID); code != 5 || !strings.Contains(out, "exit_code=5") {
			t.Errorf("vm bg wait = %q exit %d, want the command's exit code 5", out, code)
		}
		if out, code := d.cli(t, "", "vm", "bg", "logs", vm, launched.ExecID); code != 0 || out != "bg-out\n" {
			t.Errorf("vm bg logs = %q exit %d, want bg-out", out, code)
		}
		if _, code := d.cli(t, "", "vm", "bg", "remove", vm, launched.ExecID); code != 0 {
			t.Errorf("vm bg remove exit %d", code)
		}
	})
	t.Run("shell", func(t *testing.T) { testShell(t, c, vm) })
	t.Run("shell cli with piped input", func(t *testing.T) {
		out, code := d.cli(t, "echo piped-$((20+22))\n", "vm", "shell", vm)
		if code != 0 || !strings.Contains(out, "piped-42") {
			t.Errorf("echo ... | slicer vm shell = %q exit %d, want the command run and the shell ended", out, code)
		}
	})
	t.Run("forward", func(t *testing.T) { testForward(t, c, vm) })
	t.Run("forward cli", func(t *testing.T) { testForwardCLI(t, d, vm) })
	if _, err := c.DeleteNode(context.Background(), "ops", vm); err != nil {
		t.Fatal(err)
	}
	d.assertNothingLeft(t)
}

func testFS(t *testing.T, c *client.Client, vm string) {
	ctx := context.Background()
	if err := c.Mkdir(ctx, vm, api.FSMkdirRequest{Path: "/tmp/fs/a/b", Recursive: true, Mode: "0750"}); err != nil {
		t.Fatalf("Mkdir recursive: %v", err)
	}
	if err := c.WriteFile(ctx, vm, "/tmp/fs/a/file.txt", []byte("12345"), client.CopyOptions{Permissions: "0640"}); err != nil {
		t.Fatal(err)
	}
	entries, err := c.ReadDir(ctx, vm, "/tmp/fs/a")
	if err != nil {
		t.Fatalf("ReadDir: %v", err)
	}
	got := map[string]api.FSInfo{}
	for _, e := range entries {
		got[e.Name] = e
	}
	if b := got["b"]; len(entries) != 2 || b.Type != "directory" || b.Mode != "0750" {
		t.Errorf("ReadDir = %+v, want b (directory 0750) and file.txt", entries)
	}
	if f := got["file.txt"]; f.Type != "file" || f.Size != 5 || f.Mode != "0640" || time.Since(f.Mtime) > time.Hour || time.Since(f.Mtime) < -time.Hour {
		t.Errorf("file.txt = %+v, want a 5-byte file, 0640, modified just now", f)
	}
	st, err := c.Stat(ctx, vm, "/tmp/fs/a/file.txt")
	if err != nil || st.Name != "file.txt" || st.Size != 5 {
		t.Errorf("Stat = %+v, %v", st, err)
	}
	if _, err := c.Stat(ctx, vm, "/tmp/fs/missing"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Stat of a missing path = %v, want os.ErrNotExist", err)
	}
	if err := c.Remove(ctx, vm, "/tmp/fs/a", false); err == nil {
		t.Errorf("Remove of a non-empty directory without recursive succeeded")
	}
	if err := c.Remove(ctx, vm, "/tmp/fs/a", true); err != nil {
		t.Fatalf("Remove recursive: %v", err)
	}
	if _, err := c.Stat(ctx, vm, "/tmp/fs/a"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after Remove: %v, want os.ErrNotExist", err)
	}
}

func testWatch(t *testing.T, c *client.Client, vm string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := c.Mkdir(ctx, vm, api.FSMkdirRequest{Path: "/tmp/watched", Recursive: true}); err != nil {
		t.Fatal(err)
	}
	w, err := c.WatchFS(ctx, vm, api.FSWatchRequest{Paths: []string{"/tmp/watched"}, Patterns: []string{"*.txt"}, Events: []string{"create"}, MaxEvents: 1})
	if err != nil {
		t.Fatalf("WatchFS: %v", err)
	}
	defer w.Close()
	if err := c.WriteFile(ctx, vm, "/tmp/watched/skip.bin", []byte("x"), client.CopyOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteFile(ctx, vm, "/tmp/watched/new.txt", []byte("x"), client.CopyOptions{}); err != nil {
		t.Fatal(err)
	}
	ev, err := w.Next()
	if err != nil || ev.Type != "create" || ev.Path != "/tmp/watched/new.txt" {
		t.Fatalf("first watch event = %+v, %v; want create of /tmp/watched/new.txt", ev, err)
	}
	if ev, err := w.Next(); !errors.Is(err, io.EOF) {
		t.Errorf("after max_events=1 the stream went on: %+v, %v", ev, err)
	}
}

func testBackground(t *testing.T, c *client.Client, vm string) {
	ctx := context.Background()
	launched, err := c.ExecBackground(ctx, vm, &api.ExecRequest{Command: "for i in 1 2 3; do echo line$i; done; echo oops >&2; exit 3", Shell: "/bin/sh"})
	if err != nil || launched.ExecID == "" || launched.PID == 0 {
		t.Fatalf("ExecBackground = %+v, %v", launched, err)
	}
	id := launched.ExecID
	if res, err := c.ExecWaitExit(ctx, vm, id, time.Minute); err != nil || res.Running || res.ExitCode == nil || *res.ExitCode != 3 {
		t.Fatalf("ExecWaitExit = %+v, %v; want exit code 3", res, err)
	}
	logs, err := c.ExecLogs(ctx, vm, id, client.ExecLogsOptions{})
	if err != nil {
		t.Fatalf("ExecLogs: %v", err)
	}
	var stdout, stderr bytes.Buffer
	code, err := logs.Copy(&stdout, &stderr)
	logs.Close()
	if err != nil || code != 3 || stdout.String() != "line1\nline2\nline3\n" || stderr.String() != "oops\n" {
		t.Errorf("logs = %q / %q exit %d, %v", stdout.String(), stderr.String(), code, err)
	}

	// A process that ignores TERM is killed after the grace period.
	stubborn, err := c.ExecBackground(ctx, vm, &api.ExecRequest{Command: "trap '' TERM; echo ready; while :; do sleep 1; done", Shell: "/bin/sh"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ExecDelete(ctx, vm, stubborn.ExecID); !isStatus(err, http.StatusConflict) {
		t.Errorf("delete of a running exec = %v, want 409", err)
	}
	waitForOutput(t, c, vm, stubborn.ExecID, "ready")
	if _, err := c.ExecKill(ctx, vm, stubborn.ExecID, api.ExecKillRequest{Signal: "TERM", GraceMs: 300}); err != nil {
		t.Fatalf("ExecKill: %v", err)
	}
	res, err := c.ExecWaitExit(ctx, vm, stubborn.ExecID, time.Minute)
	if err != nil || res.Running || res.Signal != "SIGKILL" {
		t.Errorf("after TERM with grace, wait-exit = %+v, %v; want killed by SIGKILL", res, err)
	}
	list, err := c.ExecList(ctx, vm)
	if err != nil || len(list) != 2 {
		t.Errorf("ExecList = %+v, %v; want both execs", list, err)
	}
	if del, err := c.ExecDelete(ctx, vm, stubborn.ExecID); err != nil || !del.Reaped {
		t.Errorf("delete of an exited exec = %+v, %v", del, err)
	}
	if _, err := c.ExecInfo(ctx, vm, stubborn.ExecID); !isStatus(err, http.StatusGone) {
		t.Errorf("info after delete = %v, want 410", err)
	}
	if _, err := c.ExecInfo(ctx, vm, "ex_doesnotexist"); !isStatus(err, http.StatusNotFound) {
		t.Errorf("info of an unknown exec = %v, want 404", err)
	}
}

// waitForOutput follows an exec's logs until want appears on stdout.
func waitForOutput(t *testing.T, c *client.Client, vm, id, want string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	logs, err := c.ExecLogs(ctx, vm, id, client.ExecLogsOptions{Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	defer logs.Close()
	var seen strings.Builder
	for {
		f, err := logs.Next()
		if err != nil {
			t.Fatalf("waiting for %q in the logs (have %q): %v", want, seen.String(), err)
		}
		if f.Type == api.FrameStdout {
			b, _ := base64.StdEncoding.DecodeString(f.Data)
			seen.Write(b)
			if strings.Contains(seen.String(), want) {
				return
			}
		}
	}
}

func isStatus(err error, status int) bool {
	var ae *api.Error
	return errors.As(err, &ae) && ae.StatusCode == status
}

func testShell(t *testing.T, c *client.Client, vm string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sh, err := c.Shell(ctx, vm, client.ShellOptions{})
	if err != nil {
		t.Fatalf("Shell: %v", err)
	}
	defer sh.Close()
	if err := sh.Resize(ctx, 123, 45); err != nil {
		t.Fatal(err)
	}
	if err := sh.SendData(ctx, []byte("stty size; id -u; tty; exit\n")); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	for {
		b, err := sh.Read(ctx)
		if errors.Is(err, client.ErrSessionClosed) {
			break
		}
		if err != nil {
			t.Fatalf("shell read (output so far %q): %v", out.String(), err)
		}
		out.Write(b)
	}
	for _, want := range []string{"45 123", "1000", "/dev/pts/"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("shell output %q lacks %q", out.String(), want)
		}
	}
}

func testForward(t *testing.T, c *client.Client, vm string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// A persistent echo server in the guest: busybox nc forks cat per
	// connection.
	server, err := c.ExecBackground(ctx, vm, &api.ExecRequest{Command: "nc", Args: []string{"-ll", "-p", "7007", "-e", "cat"}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		c.ExecKill(ctx, vm, server.ExecID, api.ExecKillRequest{Signal: "KILL"})
		c.ExecWaitExit(ctx, vm, server.ExecID, time.Minute)
	}()

	// Twenty tunnels open at once. They are opened one after another,
	// because busybox nc listens with a backlog of one, and then all carry
	// distinct payloads at the same time.
	var conns []net.Conn
	defer func() {
		for _, conn := range conns {
			conn.Close()
		}
	}()
	for i := range 20 {
		conn, err := dialEcho(ctx, c, vm, fmt.Sprintf("hello %d\n", i))
		if err != nil {
			t.Fatalf("tunnel %d: %v", i, err)
		}
		conns = append(conns, conn)
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(conns))
	for i, conn := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := echo(conn, fmt.Sprintf("tunnel %d says %s\n", i, strings.Repeat("x", i*1000))); err != nil {
				errs <- fmt.Errorf("tunnel %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	// A unix socket in the guest: the agent's own control socket answers
	// HTTP.
	conn, err := c.DialForward(ctx, vm, "unix:/run/slicer/agent.sock")
	if err != nil {
		t.Fatalf("forward to a unix socket: %v", err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /nothing HTTP/1.1\r\nHost: agent\r\nConnection: close\r\n\r\n")
	status, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil || !strings.HasPrefix(status, "HTTP/1.1 ") {
		t.Errorf("through the unix-socket tunnel: %q, %v; want an HTTP status line", status, err)
	}

	if _, err := c.DialForward(ctx, vm, "127.0.0.1:1"); err == nil {
		t.Errorf("forward to a closed port succeeded")
	}
}

// dialEcho opens a tunnel to the guest's echo server and checks that
// hello comes back, retrying while the server is not listening yet.
func dialEcho(ctx context.Context, c *client.Client, vm, hello string) (net.Conn, error) {
	for {
		conn, err := c.DialForward(ctx, vm, "127.0.0.1:7007")
		if err == nil {
			if err = echo(conn, hello); err == nil {
				return conn, nil
			}
			conn.Close()
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("forward: %v", err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// echo sends msg on conn and checks that it comes back.
func echo(conn net.Conn, msg string) error {
	if _, err := io.WriteString(conn, msg); err != nil {
		return err
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(conn, got); err != nil {
		return fmt.Errorf("echo of %d bytes: %v", len(msg), err)
	}
	if string(got) != msg {
		return fmt.Errorf("echo came back different (%d bytes)", len(msg))
	}
	return nil
}

// testForwardCLI runs `slicer vm forward NAME -L port:host:port` and talks
// to a guest echo server through the local port it listens on.
func testForwardCLI(t *testing.T, d *daemon, vm string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := d.client
	server, err := c.ExecBackground(ctx, vm, &api.ExecRequest{Command: "nc", Args: []string{"-ll", "-p", "7008", "-e", "cat"}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		c.ExecKill(ctx, vm, server.ExecID, api.ExecKillRequest{Signal: "KILL"})
		c.ExecWaitExit(ctx, vm, server.ExecID, time.Minute)
	}()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close() // the CLI takes it
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "slicer"), "vm", "forward", vm, "-L", fmt.Sprintf("127.0.0.1:%d:127.0.0.1:7008", port))
	cmd.Env = append(cmd.Environ(), "SLICER_URL="+d.socket, "SLICER_TOKEN="+d.token)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
	}()
	for {
		conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			msg := "through the cli\n"
			io.WriteString(conn, msg)
			got := make([]byte, len(msg))
			_, err = io.ReadFull(conn, got)
			conn.Close()
			if err == nil && string(got) == msg {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no echo through slicer vm forward: %v; its stderr: %s", err, stderr.String())
		case <-time.After(200 * time.Millisecond):
		}
	}
}
