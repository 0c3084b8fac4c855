package guest

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/agent"
)

// socketPair returns the two ends of a connected unix socket pair.
func socketPair(t *testing.T) (host, guest net.Conn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conns := make([]net.Conn, 2)
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "socketpair")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c
	}
	return conns[0], conns[1]
}

// harness connects a Client to an in-process Server: every dial makes a new
// socket pair and hands its guest end to serve (by default the server's
// ServeConn).
type harness struct {
	t      *testing.T
	srv    *Server
	client *agent.Client
	dials  atomic.Int32
	ctx    context.Context
	wg     sync.WaitGroup

	// serve handles the guest end of dial number n (from 1); nil serves it.
	serve func(n int, guest net.Conn)
}

func newHarness(t *testing.T) *harness {
	log := testLogger(t)
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{t: t, srv: NewServer(log), ctx: ctx}
	h.srv.etcDir = t.TempDir() // no passwd: requests name their uid
	h.srv.paths = testPaths(t)
	t.Cleanup(h.srv.fb.runs.Wait) // userdata started by the test
	h.client = agent.NewClient(h.dial, log)
	t.Cleanup(func() {
		cancel() // first, so that the guest side reads the close as the end
		h.client.Close()
		h.wg.Wait()
	})
	return h
}

func (h *harness) dial(ctx context.Context) (net.Conn, error) {
	n := int(h.dials.Add(1))
	host, guest := socketPair(h.t)
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		if h.serve != nil {
			h.serve(n, guest)
			return
		}
		h.serveGuest(guest)
	}()
	return host, nil
}

func (h *harness) serveGuest(guest net.Conn) {
	if err := h.srv.ServeConn(h.ctx, guest); err != nil && h.ctx.Err() == nil {
		h.t.Errorf("ServeConn: %v", err)
	}
}

// asSelf makes req run as the test's own user, which works with and
// without root.
func asSelf(req *api.ExecRequest) *api.ExecRequest {
	uid, gid := uint32(os.Getuid()), uint32(os.Getgid())
	req.UID, req.GID = &uid, &gid
	return req
}

// readFrames decodes NDJSON frames until EOF, checking every line ends in
// a newline.
func readFrames(t *testing.T, r io.Reader) []api.ExecFrame {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("read frames: %v", err)
	}
	if len(b) > 0 && b[len(b)-1] != '\n' {
		t.Errorf("stream does not end with a newline: %q", b)
	}
	var fs []api.ExecFrame
	for _, line := range bytes.SplitAfter(b, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var f api.ExecFrame
		if err := json.Unmarshal(line, &f); err != nil {
			t.Fatalf("decode frame %q: %v", line, err)
		}
		fs = append(fs, f)
	}
	return fs
}

// output is what a stream of frames adds up to.
type output struct {
	Stdout, Stderr string
	ExitCode       int
	Signal         string
}

// checkStream checks the frame grammar (started, output, exit) and returns
// the decoded output.
func checkStream(t *testing.T, fs []api.ExecFrame, stdio string) output {
	t.Helper()
	if len(fs) < 2 {
		t.Fatalf("got %d frames, want at least started and exit: %+v", len(fs), fs)
	}
	if f := fs[0]; f.Type != api.FrameStarted || f.Pid <= 0 || f.StartedAt.IsZero() || f.ExitCode != 0 {
		t.Errorf("first frame = %+v, want started with pid and started_at", f)
	}
	last := fs[len(fs)-1]
	if last.Type != api.FrameExit || last.EndedAt.IsZero() {
		t.Errorf("last frame = %+v, want exit with ended_at", last)
	}
	var out output
	for _, f := range fs[1 : len(fs)-1] {
		if f.ExitCode != 0 || f.Error != "" {
			t.Errorf("output frame %+v carries an exit code or error", f)
		}
		payload := f.Stdout + f.Stderr
		if stdio == api.StdioBase64 {
			if f.Encoding != api.StdioBase64 {
				t.Errorf("frame %+v lacks encoding base64", f)
			}
			b, err := base64.StdEncoding.DecodeString(payload)
			if err != nil {
				t.Fatalf("frame %+v: %v", f, err)
			}
			payload = string(b)
		}
		switch f.Type {
		case api.FrameStdout:
			out.Stdout += payload
		case api.FrameStderr:
			out.Stderr += payload
		default:
			t.Errorf("unexpected frame %+v", f)
		}
	}
	out.ExitCode, out.Signal = last.ExitCode, last.Signal
	return out
}

func TestHealth(t *testing.T) {
	h := newHarness(t)
	got, err := h.client.Health(context.Background())
	if err != nil {
		t.Fatalf("Health: %v", err)
	}
	host, _ := os.Hostname()
	if got.Hostname != host || got.AgentVersion != Version || got.AgentUptime <= 0 || got.SystemUptime <= 0 || got.UserdataRan {
		t.Errorf("Health = %+v, want hostname %q, version %q, positive uptimes, userdata not run", got, host, Version)
	}
}

// withStarters runs f once with the plain starter and once with a running
// reaper, the way the agent starts processes as PID 1.
func withStarters(t *testing.T, f func(t *testing.T, h *harness)) {
	t.Run("plain", func(t *testing.T) { f(t, newHarness(t)) })
	t.Run("reaper", func(t *testing.T) {
		r := NewReaper()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { r.Run(ctx); close(done) }()
		// Registered before the harness, so it runs after the harness has
		// shut down: the server waits for its commands, whose exits only
		// a running reaper collects.
		t.Cleanup(func() { cancel(); <-done })
		h := newHarness(t)
		h.srv.starter = r
		f(t, h)
	})
}

func TestExecStream(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		req  api.ExecRequest
		want output
	}{
		{
			name: "echo",
			req:  api.ExecRequest{Command: "echo", Args: []string{"hello", "a b"}},
			want: output{Stdout: "hello a b\n"},
		},
		{
			name: "shell with stderr and exit code",
			req:  api.ExecRequest{Command: "echo out; echo err >&2; exit 3", Shell: "/bin/sh"},
			want: output{Stdout: "out\n", Stderr: "err\n", ExitCode: 3},
		},
		{
			name: "base64",
			req:  api.ExecRequest{Command: `printf 'a\000b\377'; printf 'e\n' >&2`, Shell: "/bin/sh", Stdio: api.StdioBase64},
			want: output{Stdout: "a\x00b\xff", Stderr: "e\n"},
		},
		{
			name: "env and cwd",
			req:  api.ExecRequest{Command: "sh", Args: []string{"-c", `echo "$FOO"; pwd`}, Env: []string{"FOO=bar"}, Cwd: dir},
			want: output{Stdout: "bar\n" + dir + "\n"},
		},
		{
			name: "killed by a signal",
			req:  api.ExecRequest{Command: "kill -9 $$", Shell: "/bin/sh"},
			want: output{ExitCode: 137, Signal: "SIGKILL"},
		},
		{
			name: "large output",
			req:  api.ExecRequest{Command: "head -c 300000 /dev/zero | tr '\\0' x", Shell: "/bin/sh"},
			want: output{Stdout: strings.Repeat("x", 300000)},
		},
	}
	withStarters(t, func(t *testing.T, h *harness) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				if tt.req.Stdio == "" {
					tt.req.Stdio = api.StdioText
				}
				body, err := h.client.Exec(context.Background(), asSelf(&tt.req), nil)
				if err != nil {
					t.Fatalf("Exec: %v", err)
				}
				defer body.Close()
				got := checkStream(t, readFrames(t, body), tt.req.Stdio)
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("output (-want +got):\n%s", diff)
				}
			})
		}
	})
}

func TestExecStartFailure(t *testing.T) {
	notExec := filepath.Join(t.TempDir(), "data")
	if err := os.WriteFile(notExec, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, cmd, cwd string
		code           int
		errHas         string
	}{
		{"missing command", "no-such-command-for-the-agent", "", 127, "executable file not found"},
		{"not executable", notExec, "", 126, "permission denied"},
		{"missing cwd", "true", "/no/such/dir", 127, "no such file"},
	}
	h := newHarness(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, err := h.client.Exec(context.Background(), asSelf(&api.ExecRequest{Command: tt.cmd, Cwd: tt.cwd}), nil)
			if err != nil {
				t.Fatalf("Exec: %v", err)
			}
			defer body.Close()
			fs := readFrames(t, body)
			if len(fs) != 1 || !fs[0].Final() || fs[0].ExitCode != tt.code || !strings.Contains(fs[0].Error, tt.errHas) {
				t.Errorf("frames = %+v, want one error frame with exit code %d mentioning %q", fs, tt.code, tt.errHas)
			}
		})
	}
}

func TestExecStdinFullDuplex(t *testing.T) {
	withStarters(t, func(t *testing.T, h *harness) {
		pr, pw := io.Pipe()
		defer pw.Close()
		body, err := h.client.Exec(context.Background(), asSelf(&api.ExecRequest{Command: "cat", Stdio: api.StdioText}), pr)
		if err != nil {
			t.Fatalf("Exec: %v", err)
		}
		defer body.Close()
		dec := json.NewDecoder(body)
		next := func() api.ExecFrame {
			t.Helper()
			var f api.ExecFrame
			if err := dec.Decode(&f); err != nil {
				t.Fatalf("decode frame: %v", err)
			}
			return f
		}
		if f := next(); f.Type != api.FrameStarted {
			t.Fatalf("first frame = %+v, want started", f)
		}
		// The echo comes back while stdin is still open: full duplex.
		if _, err := io.WriteString(pw, "ping\n"); err != nil {
			t.Fatal(err)
		}
		if f := next(); f.Type != api.FrameStdout || f.Stdout != "ping\n" {
			t.Fatalf("frame = %+v, want stdout ping", f)
		}
		if _, err := io.WriteString(pw, "pong\n"); err != nil {
			t.Fatal(err)
		}
		pw.Close() // EOF of the body closes cat's stdin
		var rest strings.Builder
		for {
			f := next()
			if f.Type == api.FrameExit {
				if f.ExitCode != 0 {
					t.Errorf("exit frame = %+v, want exit code 0", f)
				}
				break
			}
			rest.WriteString(f.Stdout)
		}
		if rest.String() != "pong\n" {
			t.Errorf("stdout after ping = %q, want pong", rest.String())
		}
	})
}

func TestExecBuffered(t *testing.T) {
	tests := []struct {
		name string
		req  api.ExecRequest
		want api.ExecResult
	}{
		{
			name: "text",
			req:  api.ExecRequest{Command: "echo out; echo err >&2; exit 3", Shell: "/bin/sh"},
			want: api.ExecResult{Stdout: "out\n", Stderr: "err\n", ExitCode: 3},
		},
		{
			name: "base64",
			req:  api.ExecRequest{Command: "printf", Args: []string{`\001\002`}, Stdio: api.StdioBase64},
			want: api.ExecResult{Stdout: "AQI=", Encoding: "base64"},
		},
		{
			name: "start failure",
			req:  api.ExecRequest{Command: "no-such-command-for-the-agent"},
			want: api.ExecResult{Error: `exec: "no-such-command-for-the-agent": executable file not found in $PATH`, ExitCode: 127},
		},
	}
	withStarters(t, func(t *testing.T, h *harness) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got, err := h.client.ExecBuffered(context.Background(), asSelf(&tt.req))
				if err != nil {
					t.Fatalf("ExecBuffered: %v", err)
				}
				if tt.want.Error == "" && (got.Pid <= 0 || got.StartedAt.IsZero() || got.EndedAt.IsZero()) {
					t.Errorf("ExecBuffered = %+v, want pid and times", got)
				}
				got.Pid, got.StartedAt, got.EndedAt = 0, time.Time{}, time.Time{}
				if diff := cmp.Diff(tt.want, *got); diff != "" {
					t.Errorf("ExecBuffered (-want +got):\n%s", diff)
				}
			})
		}
	})
}

func TestExecRejected(t *testing.T) {
	h := newHarness(t)
	tests := []struct {
		name string
		req  api.ExecRequest
		want error
	}{
		{"no command", api.ExecRequest{}, api.ErrInvalid},
		{"bad env", api.ExecRequest{Command: "true", Env: []string{"NOPE"}}, api.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, err := h.client.Exec(context.Background(), &tt.req, nil)
			if err == nil {
				body.Close()
			}
			var apiErr *api.Error
			if !errors.Is(err, tt.want) || !errors.As(err, &apiErr) {
				t.Errorf("Exec = %v, want an *api.Error wrapping %v", err, tt.want)
			}
			if _, err := h.client.ExecBuffered(context.Background(), &tt.req); !errors.Is(err, tt.want) {
				t.Errorf("ExecBuffered = %v, want %v", err, tt.want)
			}
		})
	}
}

// processDead reports whether pid has exited (gone, or a zombie nobody
// has reaped yet).
func processDead(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] == 'Z'
}

func TestExecCancelKillsProcessGroup(t *testing.T) {
	withStarters(t, func(t *testing.T, h *harness) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		req := asSelf(&api.ExecRequest{Command: "sleep 300 & echo $!; wait", Shell: "/bin/sh", Stdio: api.StdioText})
		body, err := h.client.Exec(ctx, req, nil)
		if err != nil {
			t.Fatalf("Exec: %v", err)
		}
		defer body.Close()
		dec := json.NewDecoder(body)
		var child int
		for child == 0 {
			var f api.ExecFrame
			if err := dec.Decode(&f); err != nil {
				t.Fatalf("decode frame: %v", err)
			}
			if f.Type == api.FrameStdout {
				if child, err = strconv.Atoi(strings.TrimSpace(f.Stdout)); err != nil {
					t.Fatalf("child pid %q: %v", f.Stdout, err)
				}
			}
		}
		if processDead(child) {
			t.Fatalf("sleep %d is not running before the cancel", child)
		}
		cancel()
		deadline := time.Now().Add(30 * time.Second)
		for !processDead(child) {
			if time.Now().After(deadline) {
				unix.Kill(child, unix.SIGKILL)
				t.Fatalf("sleep %d still runs after the caller hung up", child)
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

// TestExecStdinLeftOpen checks that a command which ends without reading
// its stdin ends the stream even though the caller keeps stdin open.
func TestExecStdinLeftOpen(t *testing.T) {
	h := newHarness(t)
	pr, pw := io.Pipe()
	defer pw.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	body, err := h.client.Exec(ctx, asSelf(&api.ExecRequest{Command: "echo", Args: []string{"hi"}, Stdio: api.StdioText}), pr)
	if err != nil {
		t.Fatalf("Exec: %v", err)
	}
	defer body.Close()
	got := checkStream(t, readFrames(t, body), api.StdioText)
	if ctx.Err() != nil {
		t.Fatalf("the stream only ended when the caller gave up: %v", ctx.Err())
	}
	if diff := cmp.Diff(output{Stdout: "hi\n"}, got); diff != "" {
		t.Errorf("output (-want +got):\n%s", diff)
	}
}

// TestExecBackgroundChild checks that a background child holding stdout
// open does not hold the stream once the command has exited, and that a
// command which ends normally leaves its background children alone.
func TestExecBackgroundChild(t *testing.T) {
	h := newHarness(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	body, err := h.client.Exec(ctx, asSelf(&api.ExecRequest{Command: "sleep 120 & echo $!", Shell: "/bin/sh", Stdio: api.StdioText}), nil)
	if err != nil {
		t.Fatalf("Exec: %v", err)
	}
	defer body.Close()
	got := checkStream(t, readFrames(t, body), api.StdioText)
	child, err := strconv.Atoi(strings.TrimSpace(got.Stdout))
	if err != nil {
		t.Fatalf("stdout %q: want the background pid", got.Stdout)
	}
	defer unix.Kill(child, unix.SIGKILL)
	if got.ExitCode != 0 {
		t.Errorf("exit code %d, want 0", got.ExitCode)
	}
	// Hanging up after the exit frame is what every caller does; give the
	// agent a moment to see it, then the child must still be there.
	body.Close()
	time.Sleep(300 * time.Millisecond)
	if processDead(child) {
		t.Errorf("background child %d was killed after a normal exit", child)
	}
}
