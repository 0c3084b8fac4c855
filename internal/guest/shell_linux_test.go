package guest

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/api/shellframe"
	"github.com/openslicer/openslicer/internal/agent"
)

// hangGuard bounds how long a test waits on the agent before failing
// instead of hanging; it is not a timing assertion.
const hangGuard = time.Minute

// shellQueryAsSelf is a shell query that runs as the test's own user.
func shellQueryAsSelf(extra ...string) url.Values {
	q := url.Values{
		"uid": {strconv.Itoa(os.Getuid())},
		"gid": {strconv.Itoa(os.Getgid())},
	}
	for i := 0; i+1 < len(extra); i += 2 {
		q.Set(extra[i], extra[i+1])
	}
	return q
}

// shellClient is the host end of a shell session in a test.
type shellClient struct {
	t      *testing.T
	conn   net.Conn
	out    bytes.Buffer // data received so far
	closed bool         // a session-close frame was received
}

func openShell(t *testing.T, h *harness, q url.Values) *shellClient {
	t.Helper()
	conn, err := h.client.OpenShell(context.Background(), q)
	if err != nil {
		t.Fatalf("OpenShell(%v): %v", q, err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetReadDeadline(time.Now().Add(hangGuard))
	return &shellClient{t: t, conn: conn}
}

func (sc *shellClient) send(typ byte, payload []byte) {
	sc.t.Helper()
	if _, err := sc.conn.Write(shellframe.New(typ, payload)); err != nil {
		sc.t.Fatalf("send frame %d: %v", typ, err)
	}
}

func (sc *shellClient) resize(cols, rows uint32) {
	p := make([]byte, 8)
	binary.BigEndian.PutUint32(p[:4], cols)
	binary.BigEndian.PutUint32(p[4:], rows)
	sc.send(api.ShellWindowSize, p)
}

// next reads one frame, collecting data and noting a session close.
func (sc *shellClient) next() error {
	f, err := shellframe.Read(sc.conn)
	if err != nil {
		return err
	}
	switch f.Type() {
	case api.ShellData:
		sc.out.Write(f.Payload())
	case api.ShellSessionClose:
		sc.closed = true
	}
	return nil
}

// waitFor reads until the output matches re and returns the match.
func (sc *shellClient) waitFor(re *regexp.Regexp) []string {
	sc.t.Helper()
	for {
		if m := re.FindStringSubmatch(sc.out.String()); m != nil {
			return m
		}
		if err := sc.next(); err != nil {
			sc.t.Fatalf("waiting for %q: %v; output so far:\n%s", re, err, sc.out.String())
		}
	}
}

// readToEnd reads until the agent closes the stream.
func (sc *shellClient) readToEnd() {
	sc.t.Helper()
	for {
		err := sc.next()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			sc.t.Fatalf("read to the end of the session: %v; output:\n%s", err, sc.out.String())
		}
	}
}

func TestShellSession(t *testing.T) {
	h := newHarness(t)
	sc := openShell(t, h, shellQueryAsSelf()) // no shell: the fallback /bin/sh

	// The quotes keep the typed line, echoed by the terminal, from matching.
	sc.send(api.ShellData, []byte("echo hel''lo-$((6*7)) TERM=$TERM\n"))
	sc.waitFor(regexp.MustCompile(`hello-42 TERM=xterm-256color`))

	sc.send(api.ShellHeartbeat, nil)
	sc.resize(123, 45)
	sc.send(api.ShellData, []byte("stty size\n"))
	sc.waitFor(regexp.MustCompile(`45 123\r?\n`)) // a prompt may come first

	sc.send(api.ShellData, []byte("exit 3\n"))
	sc.readToEnd()
	if !sc.closed {
		t.Errorf("session ended without a session-close frame; output:\n%s", sc.out.String())
	}
}

func TestShellCwdAndNamedShell(t *testing.T) {
	h := newHarness(t)
	dir := t.TempDir()
	sc := openShell(t, h, shellQueryAsSelf("shell", "sh", "cwd", dir))
	sc.send(api.ShellData, []byte("echo \"cwd=$(pwd)\" shell=$SHELL; exit\n"))
	sc.waitFor(regexp.MustCompile(`cwd=` + regexp.QuoteMeta(dir) + ` shell=/\S+/sh`))
	sc.readToEnd()
}

// TestShellHangUp checks that a host that asks for a shutdown, or just
// goes away, hangs the shell up: the shell and the job in its foreground
// end.
func TestShellHangUp(t *testing.T) {
	for _, how := range []string{"shutdown frame", "host closes"} {
		t.Run(how, func(t *testing.T) {
			h := newHarness(t)
			sc := openShell(t, h, shellQueryAsSelf())
			sc.send(api.ShellData, []byte("echo shell=$$; sh -c 'echo job=$$; exec sleep 1000'\n"))
			m := sc.waitFor(regexp.MustCompile(`shell=(\d+)[\s\S]*job=(\d+)`))
			shell, _ := strconv.Atoi(m[1])
			job, _ := strconv.Atoi(m[2])
			if how == "shutdown frame" {
				sc.send(api.ShellShutdown, nil)
				sc.readToEnd()
			} else {
				sc.conn.Close()
			}
			waitGone(t, shell)
			waitGone(t, job)
		})
	}
}

// waitGone waits until process pid has exited (gone, or a zombie).
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for {
		stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return
		}
		// The state follows the command, which is in parentheses.
		if i := bytes.LastIndexByte(stat, ')'); i > 0 && bytes.HasPrefix(stat[i:], []byte(") Z")) {
			return
		}
		if time.Now().After(deadline) {
			_ = unix.Kill(pid, unix.SIGKILL)
			t.Fatalf("process %d still running: %s", pid, stat)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestShellErrorsBeforeUpgrade(t *testing.T) {
	h := newHarness(t)
	for _, tc := range []struct {
		name     string
		query    url.Values
		protocol string
		want     error
		contains string
	}{
		{"bad uid", url.Values{"uid": {"root"}}, agent.ShellProtocol, api.ErrInvalid, "uid"},
		{"missing shell", shellQueryAsSelf("shell", "/no/such/shell"), agent.ShellProtocol, api.ErrInvalid, "/no/such/shell"},
		{"shell not in PATH", shellQueryAsSelf("shell", "no-such-shell"), agent.ShellProtocol, api.ErrInvalid, "no-such-shell"},
		{"missing cwd", shellQueryAsSelf("cwd", "/no/such/dir"), agent.ShellProtocol, api.ErrInvalid, "/no/such/dir"},
		{"wrong protocol", shellQueryAsSelf(), "websocket", api.ErrInvalid, "Upgrade: slicer-shell"},
	} {
		conn, err := h.client.Upgrade(context.Background(), agent.PathShell, tc.query, tc.protocol)
		if err == nil {
			conn.Close()
			t.Errorf("%s: upgrade succeeded, want an error", tc.name)
			continue
		}
		var ae *api.Error
		if !errors.Is(err, tc.want) || !errors.As(err, &ae) || !strings.Contains(err.Error(), tc.contains) {
			t.Errorf("%s: error = %v, want an *api.Error of class %v containing %q", tc.name, err, tc.want, tc.contains)
		}
	}
}

func TestUpgradeCancelled(t *testing.T) {
	h := newHarness(t)
	h.serve = func(n int, guest net.Conn) { // a guest that never answers
		<-h.ctx.Done()
		guest.Close()
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := h.client.OpenShell(ctx, shellQueryAsSelf()); !errors.Is(err, context.Canceled) {
		t.Errorf("OpenShell with a cancelled context: error = %v, want context.Canceled", err)
	}
}
