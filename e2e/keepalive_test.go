package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"testing"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/testenv"
)

// TestSharedClientAfterStdinExec drives one VM with one http.Client, keep-
// alive on, as Slicer's Go SDK does with http.DefaultClient: 50 rounds of
// an exec with stdin, then a copy up and back, a buffered exec, a
// background exec and a health check, every answer checked. An exec with
// stdin used to leave its connection with an expired read deadline, so the
// calls after it on the same connection arrived cancelled: a background
// exec answered 200 with an empty body, health 503, and a copy 200 with
// nothing written.
func TestSharedClientAfterStdinExec(t *testing.T) {
	testenv.RequireE2E(t)
	t.Parallel()
	d := startDaemon(t, "ka")
	vm := createReady(t, d.client, "ka", api.CreateNodeRequest{}).Hostname
	var reused, calls int
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", d.socket)
	}}}
	defer hc.CloseIdleConnections()
	failures := 0
	call := func(round int, method, path string, q url.Values, body io.Reader, status int, check func([]byte) error) {
		t.Helper()
		req, err := http.NewRequest(method, "http://slicer/vm/"+vm+path+"?"+q.Encode(), body)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+d.token)
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			GotConn: func(info httptrace.GotConnInfo) {
				if info.Reused {
					reused++
				}
			},
		}))
		calls++
		resp, err := hc.Do(req)
		if err != nil {
			failures++
			t.Errorf("round %d: %s %s: %v", round, method, path, err)
			return
		}
		defer resp.Body.Close()
		data, err := io.ReadAll(resp.Body)
		if err == nil && resp.StatusCode != status {
			err = fmt.Errorf("status %d, want %d", resp.StatusCode, status)
		}
		if err == nil {
			err = check(data)
		}
		if err != nil {
			failures++
			t.Errorf("round %d: %s %s?%s: %v; body %q", round, method, path, q.Encode(), err, data)
		}
	}

	const rounds = 50
	for i := range rounds {
		stdin := fmt.Sprintf("stdin of round %d\n", i)
		call(i, "POST", "/exec", url.Values{"cmd": {"cat"}, "stdin": {"true"}, "uid": {"0"}}, strings.NewReader(stdin),
			http.StatusOK, func(b []byte) error { return wantExecOutput(b, stdin) })

		file := fmt.Sprintf("/tmp/ka-%d", i)
		content := strings.Repeat(fmt.Sprintf("round %d\n", i), 500)
		call(i, "POST", "/cp", url.Values{"path": {file}, "mode": {"cp-v1-binary"}, "copy_semantics": {"cp-v1"},
			"source_name": {"ka"}, "source_type": {"file"}}, strings.NewReader(content), http.StatusOK, func([]byte) error { return nil })
		call(i, "GET", "/cp", url.Values{"path": {file}}, nil, http.StatusOK, func(b []byte) error {
			if string(b) != content {
				return fmt.Errorf("downloaded %d bytes, want the %d uploaded", len(b), len(content))
			}
			return nil
		})
		call(i, "POST", "/exec", url.Values{"cmd": {"wc"}, "args": {"-c", file}, "buffered": {"true"}}, nil, http.StatusOK, func(b []byte) error {
			var res api.ExecResult
			if err := json.Unmarshal(b, &res); err != nil {
				return err
			}
			if want := fmt.Sprintf("%d %s\n", len(content), file); res.Stdout != want || res.ExitCode != 0 {
				return fmt.Errorf("buffered exec = %+v, want stdout %q", res, want)
			}
			return nil
		})
		call(i, "POST", "/exec", url.Values{"cmd": {"true"}, "background": {"true"}, "ring_bytes": {"4096"}}, nil, http.StatusCreated, func(b []byte) error {
			var res api.ExecBackgroundResponse
			if err := json.Unmarshal(b, &res); err != nil {
				return err
			}
			if res.ExecID == "" {
				return fmt.Errorf("no exec_id")
			}
			return nil
		})
		call(i, "GET", "/health", nil, nil, http.StatusOK, func(b []byte) error {
			var h api.AgentHealthResponse
			if err := json.Unmarshal(b, &h); err != nil {
				return err
			}
			if h.AgentVersion == "" {
				return fmt.Errorf("no agent_version")
			}
			return nil
		})
		if failures > 20 {
			t.Fatalf("stopping after round %d: %d failed calls", i+1, failures)
		}
	}
	t.Logf("%d rounds, %d calls: %d failed, %d went out on a reused connection", rounds, calls, failures, reused)
	if _, err := d.client.DeleteNode(context.Background(), "ka", vm); err != nil {
		t.Fatal(err)
	}
	d.assertNothingLeft(t)
}

// wantExecOutput checks an NDJSON exec answer: stdout as given, and an exit
// frame with code 0 last.
func wantExecOutput(body []byte, stdout string) error {
	var out strings.Builder
	var last api.ExecFrame
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		var f api.ExecFrame
		if err := json.Unmarshal(sc.Bytes(), &f); err != nil {
			return fmt.Errorf("frame %q: %v", sc.Text(), err)
		}
		if f.Type == api.FrameStdout {
			out.WriteString(f.Data + f.Stdout) // the agent fills one or the other
		}
		last = f
	}
	if last.Type != api.FrameExit || last.ExitCode != 0 {
		return fmt.Errorf("last frame %+v, want exit 0", last)
	}
	if out.String() != stdout {
		return fmt.Errorf("stdout %q, want %q", out.String(), stdout)
	}
	return nil
}
