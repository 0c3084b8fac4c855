package guest

import (
	"encoding/base64"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/openslicer/openslicer/api"
)

func TestCheckBackground(t *testing.T) {
	tests := []struct {
		name    string
		req     api.ExecRequest
		want    int64
		wantErr error
	}{
		{"default ring", api.ExecRequest{Command: "x"}, defaultRingBytes, nil},
		{"ring_bytes", api.ExecRequest{Command: "x", RingBytes: 64}, 64, nil},
		{"stdin", api.ExecRequest{Command: "x", Stdin: true}, 0, api.ErrInvalid},
		{"buffered", api.ExecRequest{Command: "x", Buffered: true}, 0, api.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := checkBackground(&tt.req)
			if got != tt.want || !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Errorf("checkBackground(%+v) = %d, %v; want %d, %v", tt.req, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestCheckRingBudget(t *testing.T) {
	tests := []struct {
		reserved, want, limit int64
		ok                    bool
	}{
		{0, 10, 10, true},
		{5, 5, 10, true},
		{5, 6, 10, false},
		{0, 11, 10, false},
		{0, maxTotalRingBytes, maxTotalRingBytes, true},
		{1, maxTotalRingBytes, maxTotalRingBytes, false},
	}
	for _, tt := range tests {
		err := checkRingBudget(tt.reserved, tt.want, tt.limit)
		if tt.ok != (err == nil) || (err != nil && !errors.Is(err, api.ErrUnavailable)) {
			t.Errorf("checkRingBudget(%d, %d, %d) = %v, want ok=%v (else ErrUnavailable)", tt.reserved, tt.want, tt.limit, err, tt.ok)
		}
	}
}

func TestNewExecID(t *testing.T) {
	a, b := newExecID(), newExecID()
	if !strings.HasPrefix(a, "ex_") || len(a) != 3+24 || a == b {
		t.Errorf("newExecID() = %q, %q; want distinct ex_ and 24 hex digits", a, b)
	}
}

func TestPlanKill(t *testing.T) {
	tests := []struct {
		req  api.ExecKillRequest
		want killPlan
		err  bool
	}{
		{req: api.ExecKillRequest{}, want: killPlan{sig: unix.SIGTERM, name: "TERM", escalate: true, grace: 5 * time.Second}},
		{req: api.ExecKillRequest{Signal: "sigterm", GraceMs: 250}, want: killPlan{sig: unix.SIGTERM, name: "TERM", escalate: true, grace: 250 * time.Millisecond}},
		{req: api.ExecKillRequest{Signal: "KILL"}, want: killPlan{sig: unix.SIGKILL, name: "KILL", grace: 5 * time.Second}},
		{req: api.ExecKillRequest{Signal: "SIGINT"}, want: killPlan{sig: unix.SIGINT, name: "INT", grace: 5 * time.Second}},
		{req: api.ExecKillRequest{Signal: "hup"}, want: killPlan{sig: unix.SIGHUP, name: "HUP", grace: 5 * time.Second}},
		{req: api.ExecKillRequest{Signal: "Quit"}, want: killPlan{sig: unix.SIGQUIT, name: "QUIT", grace: 5 * time.Second}},
		{req: api.ExecKillRequest{Signal: "usr1"}, want: killPlan{sig: unix.SIGUSR1, name: "USR1", grace: 5 * time.Second}},
		{req: api.ExecKillRequest{Signal: "SIGUSR2"}, want: killPlan{sig: unix.SIGUSR2, name: "USR2", grace: 5 * time.Second}},
		{req: api.ExecKillRequest{Signal: "STOP"}, err: true},
		{req: api.ExecKillRequest{Signal: "9"}, err: true},
		{req: api.ExecKillRequest{GraceMs: -1}, err: true},
	}
	for _, tt := range tests {
		got, err := planKill(tt.req)
		if tt.err {
			if !errors.Is(err, api.ErrInvalid) {
				t.Errorf("planKill(%+v) error = %v, want ErrInvalid", tt.req, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("planKill(%+v) = %+v, %v; want %+v", tt.req, got, err, tt.want)
		}
	}
}

func TestParseWaitTimeout(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		err  bool
	}{
		{"", 30 * time.Second, false},
		{"0", 0, false},
		{"5", 5 * time.Second, false},
		{"600", 600 * time.Second, false},
		{"601", 600 * time.Second, false},
		{"99999999999999", 600 * time.Second, false},
		{"-1", 0, true},
		{"1.5", 0, true},
		{"5s", 0, true},
	}
	for _, tt := range tests {
		got, err := parseWaitTimeout(tt.in)
		if got != tt.want || tt.err != (err != nil) || (err != nil && !errors.Is(err, api.ErrInvalid)) {
			t.Errorf("parseWaitTimeout(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func TestParseLogsQuery(t *testing.T) {
	tests := []struct {
		in   string
		want logsQuery
		err  bool
	}{
		{"", logsQuery{}, false},
		{"follow=true&from_id=7", logsQuery{follow: true, fromID: 7}, false},
		{"follow=false&from_id=0", logsQuery{}, false},
		{"follow=maybe", logsQuery{}, true},
		{"from_id=-1", logsQuery{}, true},
		{"from_id=x", logsQuery{}, true},
	}
	for _, tt := range tests {
		q, _ := url.ParseQuery(tt.in)
		got, err := parseLogsQuery(q)
		if got != tt.want || tt.err != (err != nil) || (err != nil && !errors.Is(err, api.ErrInvalid)) {
			t.Errorf("parseLogsQuery(%q) = %+v, %v; want %+v, error %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func TestLogFrame(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	m := bgMeta{pid: 42, started: at, status: exitStatus{Code: 137, Signal: "SIGKILL"}, ended: at.Add(time.Second)}
	tests := []struct {
		name string
		e    ringEntry
		want api.ExecFrame
	}{
		{
			name: "started",
			e:    ringEntry{id: 1, kind: api.FrameStarted, at: at},
			want: api.ExecFrame{ID: 1, Timestamp: at, Type: api.FrameStarted, Pid: 42, StartedAt: at},
		},
		{
			name: "stdout",
			e:    ringEntry{id: 2, kind: api.FrameStdout, at: at, data: []byte("hi\x00")},
			want: api.ExecFrame{ID: 2, Timestamp: at, Type: api.FrameStdout, Encoding: api.StdioBase64, Data: base64.StdEncoding.EncodeToString([]byte("hi\x00"))},
		},
		{
			name: "stderr",
			e:    ringEntry{id: 3, kind: api.FrameStderr, at: at, data: []byte("e")},
			want: api.ExecFrame{ID: 3, Timestamp: at, Type: api.FrameStderr, Encoding: api.StdioBase64, Data: "ZQ=="},
		},
		{
			name: "exit",
			e:    ringEntry{id: 4, kind: api.FrameExit, at: at},
			want: api.ExecFrame{ID: 4, Timestamp: at, Type: api.FrameExit, ExitCode: 137, Signal: "SIGKILL", EndedAt: at.Add(time.Second)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, logFrame(tt.e, m)); diff != "" {
				t.Errorf("logFrame (-want +got):\n%s", diff)
			}
		})
	}
}

func TestGapFrame(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	f := gapFrame(ringGap{frames: 3, bytes: 100, lastID: 4, exact: true}, at)
	want := api.ExecFrame{ID: 4, Timestamp: at, Type: api.FrameGap, DroppedBytes: 100, DroppedFrames: 3}
	if f.Message == "" || !strings.Contains(f.Message, "100 bytes") {
		t.Errorf("gapFrame message = %q, want one naming 100 bytes", f.Message)
	}
	f.Message = ""
	if diff := cmp.Diff(want, f); diff != "" {
		t.Errorf("gapFrame (-want +got):\n%s", diff)
	}
	if m := gapFrame(ringGap{frames: 1, bytes: 9, lastID: 2}, at).Message; !strings.Contains(m, "at most 9 bytes") {
		t.Errorf("inexact gapFrame message = %q, want it to say at most 9 bytes", m)
	}
}
