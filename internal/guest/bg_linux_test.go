package guest

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/agent"
)

// cleanupWait bounds how long a test's cleanup waits for a killed exec to
// finish; it is a safety net, not a timing assertion.
const cleanupWait = 30 * time.Second

// bgCall sends method path?q with body (may be nil) to the agent and
// returns the response; the body is closed when the test ends.
func bgCall(t *testing.T, h *harness, method, path string, q url.Values, body io.Reader) *http.Response {
	t.Helper()
	return bgCallCtx(context.Background(), t, h, method, path, q, body)
}

func bgCallCtx(ctx context.Context, t *testing.T, h *harness, method, path string, q url.Values, body io.Reader) *http.Response {
	t.Helper()
	u := "http://agent" + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// bgJSON sends a request, checks the status and decodes the JSON answer
// into out (unless nil).
func bgJSON(t *testing.T, h *harness, method, path string, q url.Values, body io.Reader, status int, out any) {
	t.Helper()
	resp := bgCall(t, h, method, path, q, body)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != status {
		t.Fatalf("%s %s?%s = %d %s, want %d", method, path, q.Encode(), resp.StatusCode, b, status)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: decode %s: %v", method, path, b, err)
		}
	}
}

// launchQuery is the query of a background launch of req as the test's
// own user; stdio is base64, as the public client sends it, unless req
// names it.
func launchQuery(req api.ExecRequest) url.Values {
	req.Background = true
	if req.Stdio == "" {
		req.Stdio = api.StdioBase64
	}
	return asSelf(&req).Query()
}

// bgLaunch launches req in the background, and when the test ends kills
// its process group and waits for it to finish.
func bgLaunch(t *testing.T, h *harness, req api.ExecRequest) api.ExecBackgroundResponse {
	t.Helper()
	var res api.ExecBackgroundResponse
	bgJSON(t, h, http.MethodPost, agent.PathExec, launchQuery(req), nil, http.StatusCreated, &res)
	e, err := h.srv.bg.get(res.ExecID)
	if err != nil {
		t.Fatalf("launched exec %s is not registered: %v", res.ExecID, err)
	}
	t.Cleanup(func() {
		_, _ = e.signal(unix.SIGKILL)
		select {
		case <-e.done:
		case <-time.After(cleanupWait):
			t.Errorf("exec %s (pid %d) did not finish after SIGKILL", e.id, e.proc.pid)
		}
	})
	return res
}

func execPath(id string, sub ...string) string {
	return strings.Join(append([]string{agent.PathExec, id}, sub...), "/")
}

// bgWaitExit waits for an exec to exit (timeout in seconds, "" for the
// default).
func bgWaitExit(t *testing.T, h *harness, id, timeout string) api.ExecWaitExitResponse {
	t.Helper()
	q := url.Values{}
	if timeout != "" {
		q.Set("timeout", timeout)
	}
	var res api.ExecWaitExitResponse
	bgJSON(t, h, http.MethodGet, execPath(id, "wait-exit"), q, nil, http.StatusOK, &res)
	return res
}

// bgLogs reads a whole logs stream.
func bgLogs(t *testing.T, h *harness, id string, q url.Values) []api.ExecFrame {
	t.Helper()
	resp := bgCall(t, h, http.MethodGet, execPath(id, "logs"), q, nil)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != agent.ContentTypeNDJSON {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("logs %s = %d (%s) %s, want 200 NDJSON", id, resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	return readFrames(t, resp.Body)
}

// logOutput decodes the output frames of fs and checks that their ids
// increase by one from the first frame on.
func logOutput(t *testing.T, fs []api.ExecFrame) (stdout, stderr string) {
	t.Helper()
	for i, f := range fs {
		if i > 0 && f.ID != fs[i-1].ID+1 {
			t.Errorf("frame %d has id %d after id %d, want consecutive ids: %+v", i, f.ID, fs[i-1].ID, fs)
		}
		if f.Type != api.FrameStdout && f.Type != api.FrameStderr {
			continue
		}
		if f.Encoding != api.StdioBase64 {
			t.Errorf("output frame %+v is not base64", f)
		}
		b, err := base64.StdEncoding.DecodeString(f.Data)
		if err != nil {
			t.Fatalf("frame %+v: %v", f, err)
		}
		if f.Type == api.FrameStdout {
			stdout += string(b)
		} else {
			stderr += string(b)
		}
	}
	return stdout, stderr
}

func TestBackgroundLaunchInfoLogs(t *testing.T) {
	withStarters(t, func(t *testing.T, h *harness) {
		res := bgLaunch(t, h, api.ExecRequest{Command: "echo out; echo err >&2; exit 3", Shell: "/bin/sh", Stdio: api.StdioText})
		if !strings.HasPrefix(res.ExecID, "ex_") || res.PID <= 0 || res.StartedAt.IsZero() || res.RingBytes != defaultRingBytes {
			t.Errorf("launch = %+v, want an ex_ id, a pid, started_at and ring_bytes %d", res, defaultRingBytes)
		}
		w := bgWaitExit(t, h, res.ExecID, "")
		if w.Running || w.TimedOut || w.ExitCode == nil || *w.ExitCode != 3 || w.EndedAt == nil || w.ExecID != res.ExecID {
			t.Errorf("wait-exit = %+v, want exited with code 3", w)
		}

		var info api.ExecBackgroundInfo
		bgJSON(t, h, http.MethodGet, execPath(res.ExecID), nil, nil, http.StatusOK, &info)
		if info.ExecID != res.ExecID || info.PID != res.PID || info.Command != "echo out; echo err >&2; exit 3" ||
			info.Running || info.ExitCode == nil || *info.ExitCode != 3 || info.BytesWritten != 8 || info.BytesDropped != 0 ||
			info.RingBytes != defaultRingBytes || info.UID != uint32(os.Getuid()) || info.Cwd == "" {
			t.Errorf("info = %+v, want the exited exec with 8 bytes written", info)
		}

		var list []api.ExecBackgroundInfo
		bgJSON(t, h, http.MethodGet, agent.PathExec, nil, nil, http.StatusOK, &list)
		if len(list) != 1 || list[0].ExecID != res.ExecID {
			t.Errorf("list = %+v, want just %s", list, res.ExecID)
		}

		fs := bgLogs(t, h, res.ExecID, nil)
		stdout, stderr := logOutput(t, fs)
		first, last := fs[0], fs[len(fs)-1]
		if first.ID != 1 || first.Type != api.FrameStarted || first.Pid != res.PID {
			t.Errorf("first frame = %+v, want started with id 1 and pid %d", first, res.PID)
		}
		if last.Type != api.FrameExit || last.ExitCode != 3 || last.ID+1 != info.NextID {
			t.Errorf("last frame = %+v, want exit with code 3 and id %d", last, info.NextID-1)
		}
		if stdout != "out\n" || stderr != "err\n" {
			t.Errorf("logs output = %q, %q; want %q, %q", stdout, stderr, "out\n", "err\n")
		}

		from := bgLogs(t, h, res.ExecID, url.Values{"from_id": {"2"}})
		if len(from) != len(fs)-1 || from[0].ID != 2 {
			t.Errorf("logs from_id=2 = %+v, want the frames from id 2: %+v", from, fs[1:])
		}
		followed := bgLogs(t, h, res.ExecID, url.Values{"follow": {"true"}})
		if len(followed) != len(fs) || followed[len(followed)-1].Type != api.FrameExit {
			t.Errorf("logs follow=true of an exited exec = %+v, want every frame and the end", followed)
		}
		if past := bgLogs(t, h, res.ExecID, url.Values{"follow": {"true"}, "from_id": {"99"}}); len(past) != 0 {
			t.Errorf("logs follow from past the end of an exited exec = %+v, want none", past)
		}
	})
}

// fifo makes a named pipe for a test's command to wait on.
func fifo(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "go")
	if err := unix.Mkfifo(p, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// release lets a command waiting on fifo p read a line.
func release(t *testing.T, p string) {
	t.Helper()
	if err := os.WriteFile(p, []byte("go\n"), 0o600); err != nil {
		t.Fatalf("write fifo: %v", err)
	}
}

func TestBackgroundLogsFollow(t *testing.T) {
	withStarters(t, func(t *testing.T, h *harness) {
		p := fifo(t)
		res := bgLaunch(t, h, api.ExecRequest{Command: "echo first; read x < " + p + "; echo second", Shell: "/bin/sh"})

		// Frames: 1 started, 2 "first", then 3 "second" once released.
		resp := bgCall(t, h, http.MethodGet, execPath(res.ExecID, "logs"), url.Values{"follow": {"true"}}, nil)
		ahead := bgCall(t, h, http.MethodGet, execPath(res.ExecID, "logs"), url.Values{"follow": {"true"}, "from_id": {"3"}}, nil)
		dec := json.NewDecoder(resp.Body)
		var got []api.ExecFrame
		for len(got) < 2 {
			var f api.ExecFrame
			if err := dec.Decode(&f); err != nil {
				t.Fatalf("follow: frame %d: %v", len(got)+1, err)
			}
			got = append(got, f)
		}
		if out, _ := logOutput(t, got); got[0].Type != api.FrameStarted || out != "first\n" {
			t.Fatalf("followed frames before release = %+v, want started and %q", got, "first\n")
		}
		release(t, p)
		got = append(got, readFrames(t, resp.Body)...)
		out, _ := logOutput(t, got)
		if last := got[len(got)-1]; out != "first\nsecond\n" || last.Type != api.FrameExit || last.ExitCode != 0 {
			t.Errorf("followed frames = %+v (output %q), want first, second and exit 0", got, out)
		}

		fromAhead := readFrames(t, ahead.Body)
		if out, _ := logOutput(t, fromAhead); len(fromAhead) == 0 || fromAhead[0].ID != 3 || out != "second\n" {
			t.Errorf("followed from_id=3 = %+v, want frames from 3 carrying %q", fromAhead, "second\n")
		}
	})
}

func TestBackgroundLogsGap(t *testing.T) {
	h := newHarness(t)
	const size = 4096
	res := bgLaunch(t, h, api.ExecRequest{
		Command: "head -c " + strconv.Itoa(size) + " /dev/zero | tr '\\0' x", Shell: "/bin/sh", RingBytes: 64,
	})
	bgWaitExit(t, h, res.ExecID, "")
	var info api.ExecBackgroundInfo
	bgJSON(t, h, http.MethodGet, execPath(res.ExecID), nil, nil, http.StatusOK, &info)
	if res.RingBytes != 64 || info.RingBytes != 64 || info.BytesWritten != size || info.BytesDropped < size-64 {
		t.Fatalf("info = %+v, want %d bytes written, at least %d dropped, ring 64", info, size, size-64)
	}

	fs := bgLogs(t, h, res.ExecID, nil)
	gap := fs[0]
	if gap.Type != api.FrameGap || gap.Message == "" || gap.DroppedBytes != info.BytesDropped {
		t.Fatalf("first frame = %+v, want a gap of %d bytes", gap, info.BytesDropped)
	}
	held := fs[1:]
	stdout, _ := logOutput(t, fs)
	if held[0].ID != gap.ID+1 || uint64(gap.DroppedFrames) != gap.ID || held[len(held)-1].Type != api.FrameExit {
		t.Errorf("frames after the gap = %+v, want ids from %d (gap of %d frames) to the exit", held, gap.ID+1, gap.DroppedFrames)
	}
	if int64(len(stdout))+gap.DroppedBytes != size || stdout != strings.Repeat("x", len(stdout)) || len(stdout) > 64 {
		t.Errorf("held output %q (%d bytes) and %d dropped, want %d in all, at most 64 held", stdout, len(stdout), gap.DroppedBytes, size)
	}

	from := bgLogs(t, h, res.ExecID, url.Values{"from_id": {"2"}})
	if from[0].Type != api.FrameGap || from[0].DroppedFrames != gap.DroppedFrames-1 || from[1].ID != held[0].ID {
		t.Errorf("logs from_id=2 = %+v, want a gap of %d frames, then id %d", from, gap.DroppedFrames-1, held[0].ID)
	}
	resume := bgLogs(t, h, res.ExecID, url.Values{"from_id": {strconv.FormatUint(gap.ID+1, 10)}})
	if len(resume) != len(held) || resume[0].Type == api.FrameGap {
		t.Errorf("logs resumed after the gap = %+v, want the held frames and no gap", resume)
	}
}

// waitReady follows an exec's logs until its stdout has said ready.
func waitReady(t *testing.T, h *harness, id string) {
	t.Helper()
	resp := bgCall(t, h, http.MethodGet, execPath(id, "logs"), url.Values{"follow": {"true"}}, nil)
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	var fs []api.ExecFrame
	for {
		var f api.ExecFrame
		if err := dec.Decode(&f); err != nil {
			t.Fatalf("logs of %s ended before ready: %v (%+v)", id, err, fs)
		}
		fs = append(fs, f)
		if out, _ := logOutput(t, fs); strings.Contains(out, "ready\n") {
			return
		}
	}
}

func TestBackgroundKill(t *testing.T) {
	withStarters(t, func(t *testing.T, h *harness) {
		tests := []struct {
			name       string
			cmd        string
			body       string
			wantSent   string // signal_sent
			wantSignal string // what the process died of
		}{
			{"default TERM", "echo ready; exec sleep 60", "", "TERM", "SIGTERM"},
			{"TERM trapped escalates to KILL", "trap '' TERM; echo ready; sleep 60", `{"signal":"term","grace_ms":100}`, "TERM", "SIGKILL"},
			{"KILL", "echo ready; exec sleep 60", `{"signal":"SIGKILL"}`, "KILL", "SIGKILL"},
			{"INT", "echo ready; exec sleep 60", `{"signal":"INT"}`, "INT", "SIGINT"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				res := bgLaunch(t, h, api.ExecRequest{Command: tt.cmd, Shell: "/bin/sh"})
				waitReady(t, h, res.ExecID)
				var kr api.ExecKillResponse
				bgJSON(t, h, http.MethodPost, execPath(res.ExecID, "kill"), nil, strings.NewReader(tt.body), http.StatusOK, &kr)
				if kr.ExecID != res.ExecID || kr.PID != res.PID || kr.SignalSent != tt.wantSent {
					t.Errorf("kill = %+v, want signal_sent %s for pid %d", kr, tt.wantSent, res.PID)
				}
				w := bgWaitExit(t, h, res.ExecID, "")
				if w.Running || w.Signal != tt.wantSignal || w.ExitCode == nil || *w.ExitCode != 128+int(unix.SignalNum(tt.wantSignal)) {
					t.Errorf("wait-exit after kill = %+v, want ended by %s", w, tt.wantSignal)
				}
			})
		}
	})
}

func TestBackgroundKillExited(t *testing.T) {
	h := newHarness(t)
	res := bgLaunch(t, h, api.ExecRequest{Command: "true"})
	bgWaitExit(t, h, res.ExecID, "")
	var kr api.ExecKillResponse
	bgJSON(t, h, http.MethodPost, execPath(res.ExecID, "kill"), nil, nil, http.StatusOK, &kr)
	if kr.Running || kr.SignalSent != "" || kr.ExecID != res.ExecID {
		t.Errorf("kill of an exited exec = %+v, want running false and no signal sent", kr)
	}
	bgJSON(t, h, http.MethodPost, execPath(res.ExecID, "kill"), nil, strings.NewReader(`{"signal":"STOP"}`), http.StatusBadRequest, nil)
	bgJSON(t, h, http.MethodPost, execPath(res.ExecID, "kill"), nil, strings.NewReader(`{"signal":`), http.StatusBadRequest, nil)
	bgJSON(t, h, http.MethodPost, execPath("ex_nosuch", "kill"), nil, nil, http.StatusNotFound, nil)
}

func TestBackgroundWaitExit(t *testing.T) {
	h := newHarness(t)
	p := fifo(t)
	res := bgLaunch(t, h, api.ExecRequest{Command: "read x < " + p + "; exit 4", Shell: "/bin/sh"})
	for _, timeout := range []string{"0", "1"} {
		w := bgWaitExit(t, h, res.ExecID, timeout)
		if !w.TimedOut || !w.Running || w.ExitCode != nil || w.EndedAt != nil {
			t.Errorf("wait-exit timeout=%s while running = %+v, want timed out and running", timeout, w)
		}
	}
	release(t, p)
	w := bgWaitExit(t, h, res.ExecID, "600")
	if w.TimedOut || w.Running || w.ExitCode == nil || *w.ExitCode != 4 {
		t.Errorf("wait-exit = %+v, want exit code 4", w)
	}
	bgJSON(t, h, http.MethodGet, execPath(res.ExecID, "wait-exit"), url.Values{"timeout": {"5s"}}, nil, http.StatusBadRequest, nil)
	bgJSON(t, h, http.MethodGet, execPath("ex_nosuch", "wait-exit"), nil, nil, http.StatusNotFound, nil)
}

func TestBackgroundDelete(t *testing.T) {
	h := newHarness(t)
	res := bgLaunch(t, h, api.ExecRequest{Command: "sleep", Args: []string{"60"}})
	id := res.ExecID
	bgJSON(t, h, http.MethodDelete, execPath(id), nil, nil, http.StatusConflict, nil)
	bgJSON(t, h, http.MethodPost, execPath(id, "kill"), nil, strings.NewReader(`{"signal":"KILL"}`), http.StatusOK, nil)
	bgWaitExit(t, h, id, "")
	var del api.ExecDeleteResponse
	bgJSON(t, h, http.MethodDelete, execPath(id), nil, nil, http.StatusOK, &del)
	if del != (api.ExecDeleteResponse{ExecID: id, Reaped: true}) {
		t.Errorf("delete = %+v, want reaped", del)
	}
	for _, c := range []struct{ method, path string }{
		{http.MethodGet, execPath(id)},
		{http.MethodDelete, execPath(id)},
		{http.MethodPost, execPath(id, "kill")},
		{http.MethodGet, execPath(id, "wait-exit")},
		{http.MethodGet, execPath(id, "logs")},
	} {
		bgJSON(t, h, c.method, c.path, nil, nil, http.StatusGone, nil)
	}
	var list []api.ExecBackgroundInfo
	bgJSON(t, h, http.MethodGet, agent.PathExec, nil, nil, http.StatusOK, &list)
	if len(list) != 0 {
		t.Errorf("list after delete = %+v, want empty", list)
	}
	bgJSON(t, h, http.MethodGet, execPath("ex_nosuch"), nil, nil, http.StatusNotFound, nil)
	bgJSON(t, h, http.MethodDelete, execPath("ex_nosuch"), nil, nil, http.StatusNotFound, nil)
}

func TestBackgroundRingCap(t *testing.T) {
	h := newHarness(t)
	sleep := func(ring int64) api.ExecRequest {
		return api.ExecRequest{Command: "sleep", Args: []string{"60"}, RingBytes: ring}
	}
	big := bgLaunch(t, h, sleep(200<<20))
	bgJSON(t, h, http.MethodPost, agent.PathExec, launchQuery(sleep(100<<20)), nil, http.StatusServiceUnavailable, nil)
	bgJSON(t, h, http.MethodPost, agent.PathExec, launchQuery(sleep(maxTotalRingBytes+1)), nil, http.StatusServiceUnavailable, nil)
	bgLaunch(t, h, sleep(1<<20)) // 201 MiB of 256: still fits

	// Deleting the big one frees its bytes.
	bgJSON(t, h, http.MethodPost, execPath(big.ExecID, "kill"), nil, strings.NewReader(`{"signal":"KILL"}`), http.StatusOK, nil)
	bgWaitExit(t, h, big.ExecID, "")
	bgJSON(t, h, http.MethodDelete, execPath(big.ExecID), nil, nil, http.StatusOK, nil)
	bgLaunch(t, h, sleep(100<<20))

	var list []api.ExecBackgroundInfo
	bgJSON(t, h, http.MethodGet, agent.PathExec, nil, nil, http.StatusOK, &list)
	if len(list) != 2 || list[0].StartedAt.After(list[1].StartedAt) {
		t.Errorf("list = %+v, want two execs, oldest first", list)
	}
}

func TestBackgroundBadLaunch(t *testing.T) {
	h := newHarness(t)
	for _, tt := range []struct {
		name   string
		q      url.Values
		status int
	}{
		{"stdin", url.Values{"cmd": {"true"}, "background": {"true"}, "stdin": {"true"}}, http.StatusBadRequest},
		{"buffered", url.Values{"cmd": {"true"}, "background": {"true"}, "buffered": {"true"}}, http.StatusBadRequest},
		{"negative ring", url.Values{"cmd": {"true"}, "background": {"true"}, "ring_bytes": {"-1"}}, http.StatusBadRequest},
		{"missing command", launchQuery(api.ExecRequest{Command: "no-such-command-for-the-agent"}), http.StatusBadRequest},
		{"missing cwd", launchQuery(api.ExecRequest{Command: "true", Cwd: "/no/such/dir"}), http.StatusBadRequest},
	} {
		t.Run(tt.name, func(t *testing.T) {
			bgJSON(t, h, http.MethodPost, agent.PathExec, tt.q, nil, tt.status, nil)
		})
	}
	var list []api.ExecBackgroundInfo
	bgJSON(t, h, http.MethodGet, agent.PathExec, nil, nil, http.StatusOK, &list)
	if len(list) != 0 {
		t.Errorf("list after failed launches = %+v, want empty", list)
	}
	bgJSON(t, h, http.MethodGet, execPath("x", "logs"), url.Values{"follow": {"sometimes"}}, nil, http.StatusBadRequest, nil)
}

func TestBackgroundSurvivesCaller(t *testing.T) {
	h := newHarness(t)
	// The test drops the first session abruptly, which ServeConn may
	// report as a reset connection: that is the point, not a failure.
	h.serve = func(n int, guest net.Conn) {
		if n > 1 {
			h.serveGuest(guest)
			return
		}
		_ = h.srv.ServeConn(h.ctx, guest)
	}
	ctx, cancel := context.WithCancel(context.Background())
	resp := bgCallCtx(ctx, t, h, http.MethodPost, agent.PathExec, launchQuery(api.ExecRequest{Command: "sleep", Args: []string{"60"}}), nil)
	var res api.ExecBackgroundResponse
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("launch = %d, %v", resp.StatusCode, err)
	}
	e, err := h.srv.bg.get(res.ExecID)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = e.signal(unix.SIGKILL)
		<-e.done
	})
	// The launch's stream ends, then its whole session.
	resp.Body.Close()
	cancel()
	h.client.Close()

	h.client = agent.NewClient(h.dial, testLogger(t)) // the harness closes it
	var info api.ExecBackgroundInfo
	bgJSON(t, h, http.MethodGet, execPath(res.ExecID), nil, nil, http.StatusOK, &info)
	if !info.Running || unix.Kill(res.PID, 0) != nil {
		t.Errorf("info after the caller went away = %+v, want still running", info)
	}
	pgid, err := unix.Getpgid(res.PID)
	if sid, _ := unix.Getsid(res.PID); err != nil || pgid != res.PID || sid != res.PID {
		t.Errorf("exec's process group %d and session %d (%v), want both its own (%d)", pgid, sid, err, res.PID)
	}
}
