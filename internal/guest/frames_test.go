package guest

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/openslicer/openslicer/api"
)

func TestFrameEncoding(t *testing.T) {
	at := time.Date(2026, 11, 23, 10, 0, 0, 5, time.UTC)
	const ts = `"2026-11-23T10:00:00.000000005Z"`
	tests := []struct {
		name  string
		frame api.ExecFrame
		want  string
	}{
		{
			"started", startedFrame(42, at),
			`{"timestamp":` + ts + `,"type":"started","pid":42,"started_at":` + ts + `,"exit_code":0}`,
		},
		{
			"stdout text", outputFrame(api.FrameStdout, api.StdioText, []byte("hi <&>\n"), at),
			`{"timestamp":` + ts + `,"type":"stdout","stdout":"hi <&>\n","exit_code":0}`,
		},
		{
			"stderr text", outputFrame(api.FrameStderr, api.StdioText, []byte("oops\n"), at),
			`{"timestamp":` + ts + `,"type":"stderr","stderr":"oops\n","exit_code":0}`,
		},
		{
			"stdout base64", outputFrame(api.FrameStdout, api.StdioBase64, []byte("a\x00b\xff"), at),
			`{"timestamp":` + ts + `,"type":"stdout","encoding":"base64","stdout":"YQBi/w==","exit_code":0}`,
		},
		{
			"stderr base64", outputFrame(api.FrameStderr, api.StdioBase64, []byte("x"), at),
			`{"timestamp":` + ts + `,"type":"stderr","encoding":"base64","stderr":"eA==","exit_code":0}`,
		},
		{
			"exit", exitFrame(exitStatus{Code: 3}, at.Add(-time.Second), at),
			`{"timestamp":` + ts + `,"type":"exit","ended_at":"2026-11-23T09:59:59.000000005Z","exit_code":3}`,
		},
		{
			"killed", exitFrame(exitStatus{Code: 137, Signal: "SIGKILL"}, at, at),
			`{"timestamp":` + ts + `,"type":"exit","ended_at":` + ts + `,"signal":"SIGKILL","exit_code":137}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			enc := json.NewEncoder(&b)
			enc.SetEscapeHTML(false)
			if err := enc.Encode(tt.frame); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want+"\n", b.String()); diff != "" {
				t.Errorf("encoded frame (-want +got):\n%s", diff)
			}
		})
	}
}

func TestErrorFrame(t *testing.T) {
	tests := []struct {
		err  error
		code int
	}{
		{fmt.Errorf("exec: %q: %w", "nope", exec.ErrNotFound), 127},
		{&fs.PathError{Op: "fork/exec", Path: "/etc/passwd", Err: syscall.EACCES}, 126},
		{&fs.PathError{Op: "chdir", Path: "/nowhere", Err: syscall.ENOENT}, 127},
		{&fs.PathError{Op: "fork/exec", Path: "/bin/true", Err: syscall.EPERM}, 126},
	}
	for _, tt := range tests {
		f := errorFrame(tt.err)
		if f.Error != tt.err.Error() || f.ExitCode != tt.code || !f.Final() || f.Type != "" {
			t.Errorf("errorFrame(%v) = %+v, want error %q, exit code %d, final, untyped", tt.err, f, tt.err, tt.code)
		}
	}
}

func TestSplitUTF8(t *testing.T) {
	euro := "\u20ac" // 3 bytes: e2 82 ac
	tests := []struct {
		in, complete, rest string
	}{
		{"", "", ""},
		{"abc", "abc", ""},
		{"a" + euro, "a" + euro, ""},
		{"a" + euro[:1], "a", euro[:1]},
		{"a" + euro[:2], "a", euro[:2]},
		{euro[:2], "", euro[:2]},
		{"\U0001F600"[:3], "", "\U0001F600"[:3]},
		{"a\xff", "a\xff", ""},         // invalid, never completes
		{"a\x82\xac", "a\x82\xac", ""}, // stray continuation bytes
		{"ab\x82\x82\x82\x82", "ab\x82\x82\x82\x82", ""},
	}
	for _, tt := range tests {
		c, r := splitUTF8([]byte(tt.in))
		if string(c) != tt.complete || string(r) != tt.rest {
			t.Errorf("splitUTF8(%q) = %q, %q; want %q, %q", tt.in, c, r, tt.complete, tt.rest)
		}
	}
}

func TestBufferedResult(t *testing.T) {
	start := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	end := start.Add(time.Second)
	out := capped{buf: []byte("out\n")}
	errb := capped{buf: []byte("err\n")}
	tests := []struct {
		name   string
		stdio  string
		st     exitStatus
		stdout capped
		want   api.ExecResult
	}{
		{
			"text", api.StdioText, exitStatus{Code: 3}, out,
			api.ExecResult{Stdout: "out\n", Stderr: "err\n", Pid: 7, StartedAt: start, EndedAt: end, ExitCode: 3},
		},
		{
			"base64 killed", api.StdioBase64, exitStatus{Code: 137, Signal: "SIGKILL"}, out,
			api.ExecResult{Stdout: "b3V0Cg==", Stderr: "ZXJyCg==", Encoding: "base64", Pid: 7, StartedAt: start, EndedAt: end, ExitCode: 137, Signal: "SIGKILL"},
		},
		{
			"truncated", api.StdioText, exitStatus{}, capped{buf: []byte("x"), dropped: 5}, api.ExecResult{
				Stdout: "x", Stderr: "err\n", Pid: 7, StartedAt: start, EndedAt: end,
				Error: fmt.Sprintf("stdout truncated to %d bytes (5 dropped)", maxBuffered),
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := bufferedResult(tt.stdio, 7, start, end, tt.st, tt.stdout, errb)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("bufferedResult (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCapped(t *testing.T) {
	var c capped
	c.add(make([]byte, maxBuffered-1))
	c.add([]byte("abc"))
	if len(c.buf) != maxBuffered || c.dropped != 2 || c.buf[maxBuffered-1] != 'a' {
		t.Errorf("capped after %d+3 bytes: len %d dropped %d last %q; want len %d dropped 2 last 'a'",
			maxBuffered-1, len(c.buf), c.dropped, c.buf[len(c.buf)-1], maxBuffered)
	}
}
