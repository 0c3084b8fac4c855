package guest

import (
	"bytes"
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/google/go-cmp/cmp"

	"github.com/openslicer/openslicer/api"
)

func TestParseWatchPlan(t *testing.T) {
	uid := uint32(1001)
	tests := []struct {
		name  string
		query string
		last  string
		want  watchPlan
	}{
		{
			name:  "defaults",
			query: "paths=/tmp",
			want:  watchPlan{Paths: []string{"/tmp"}, Ops: allWatchOps, Debounce: 200 * time.Millisecond, FirstID: 1},
		},
		{
			name:  "everything",
			query: "paths=/a&paths=~/b&patterns=*.go&patterns=/a/x&events=create&events=write&uid=1001&recursive=true&debounce=1s&timeout=2m&max_events=5",
			last:  "41",
			want: watchPlan{
				Paths: []string{"/a", "~/b"}, Patterns: []string{"*.go", "/a/x"}, Ops: fsnotify.Create | fsnotify.Write,
				UID: &uid, Recursive: true, Debounce: time.Second, Timeout: 2 * time.Minute, MaxEvents: 5, FirstID: 42,
			},
		},
		{
			name:  "comma separated events, any case",
			query: "paths=/a&events=Remove,rename&events=chmod",
			want:  watchPlan{Paths: []string{"/a"}, Ops: fsnotify.Remove | fsnotify.Rename | fsnotify.Chmod, Debounce: 200 * time.Millisecond, FirstID: 1},
		},
		{
			name:  "all",
			query: "paths=/a&events=all&events=write",
			want:  watchPlan{Paths: []string{"/a"}, Ops: allWatchOps, Debounce: 200 * time.Millisecond, FirstID: 1},
		},
		{
			name:  "one shot wins over max_events",
			query: "paths=/a&one_shot=true&max_events=10&debounce=0s",
			want:  watchPlan{Paths: []string{"/a"}, Ops: allWatchOps, MaxEvents: 1, FirstID: 1},
		},
		{
			name:  "last event id zero",
			query: "paths=/a",
			last:  "0",
			want:  watchPlan{Paths: []string{"/a"}, Ops: allWatchOps, Debounce: 200 * time.Millisecond, FirstID: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, err := url.ParseQuery(tt.query)
			if err != nil {
				t.Fatal(err)
			}
			got, err := parseWatchPlan(q, tt.last)
			if err != nil {
				t.Fatalf("parseWatchPlan(%q, %q): %v", tt.query, tt.last, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("parseWatchPlan(%q, %q) (-want +got):\n%s", tt.query, tt.last, diff)
			}
		})
	}
}

func TestParseWatchPlanErrors(t *testing.T) {
	tests := []struct {
		query, last string
	}{
		{"", ""},
		{"patterns=*", ""},
		{"paths=", ""},
		{"paths=/a&events=delete", ""},
		{"paths=/a&events=", ""},
		{"paths=/a&patterns=[", ""},
		{"paths=/a&uid=-1", ""},
		{"paths=/a&uid=root", ""},
		{"paths=/a&recursive=maybe", ""},
		{"paths=/a&one_shot=2", ""},
		{"paths=/a&debounce=fast", ""},
		{"paths=/a&debounce=-1s", ""},
		{"paths=/a&timeout=10", ""},
		{"paths=/a&max_events=-1", ""},
		{"paths=/a&max_events=x", ""},
		{"paths=/a", "abc"},
		{"paths=/a", "-1"},
		{"paths=/a", "18446744073709551616"},
	}
	for _, tt := range tests {
		q, err := url.ParseQuery(tt.query)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := parseWatchPlan(q, tt.last); !errors.Is(err, api.ErrInvalid) {
			t.Errorf("parseWatchPlan(%q, %q) = %v, want ErrInvalid", tt.query, tt.last, err)
		}
	}
}

func TestWatchMatch(t *testing.T) {
	tests := []struct {
		patterns []string
		name     string
		want     bool
	}{
		{nil, "/a/b.txt", true},
		{[]string{"*.txt"}, "/a/b.txt", true},
		{[]string{"*.txt"}, "/a/b.go", false},
		{[]string{"/a/*.go"}, "/a/b.go", true},
		{[]string{"/a/*.go"}, "/a/c/b.go", false},
		{[]string{"/a/*"}, "/a/c/b.go", false},
		{[]string{"*.go", "Makefile"}, "/src/Makefile", true},
		{[]string{"b?.go"}, "/src/b1.go", true},
		{[]string{"[ab].go"}, "/src/c.go", false},
	}
	for _, tt := range tests {
		p := watchPlan{Patterns: tt.patterns}
		if got := p.watchMatch(tt.name); got != tt.want {
			t.Errorf("watchMatch(%q) with patterns %q = %v, want %v", tt.name, tt.patterns, got, tt.want)
		}
	}
}

func TestSplitEvent(t *testing.T) {
	at := time.Unix(100, 0)
	tests := []struct {
		name     string
		ops      fsnotify.Op
		patterns []string
		ev       fsnotify.Event
		want     []rawEvent
	}{
		{
			name: "one type",
			ops:  allWatchOps,
			ev:   fsnotify.Event{Name: "/a/x", Op: fsnotify.Write},
			want: []rawEvent{{Path: "/a/x", Type: "write", At: at}},
		},
		{
			name: "several types, in order",
			ops:  allWatchOps,
			ev:   fsnotify.Event{Name: "/a/x", Op: fsnotify.Chmod | fsnotify.Create | fsnotify.Rename},
			want: []rawEvent{{Path: "/a/x", Type: "create", At: at}, {Path: "/a/x", Type: "rename", At: at}, {Path: "/a/x", Type: "chmod", At: at}},
		},
		{
			name: "filtered by type",
			ops:  fsnotify.Remove,
			ev:   fsnotify.Event{Name: "/a/x", Op: fsnotify.Create | fsnotify.Remove},
			want: []rawEvent{{Path: "/a/x", Type: "remove", At: at}},
		},
		{
			name: "unwanted type",
			ops:  fsnotify.Create,
			ev:   fsnotify.Event{Name: "/a/x", Op: fsnotify.Chmod},
		},
		{
			name:     "filtered by pattern",
			ops:      allWatchOps,
			patterns: []string{"*.go"},
			ev:       fsnotify.Event{Name: "/a/x.txt", Op: fsnotify.Create},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := watchPlan{Ops: tt.ops, Patterns: tt.patterns}
			if diff := cmp.Diff(tt.want, p.splitEvent(tt.ev, at)); diff != "" {
				t.Errorf("splitEvent(%v) (-want +got):\n%s", tt.ev, diff)
			}
		})
	}
}

func TestWriteSSE(t *testing.T) {
	var b bytes.Buffer
	ev := api.FSWatchEvent{ID: 7, Type: "write", Path: "/a/b\nc", Timestamp: "2026-04-12T19:33:45.123456789Z", Size: 3}
	if err := writeSSE(&b, ev); err != nil {
		t.Fatal(err)
	}
	want := "id: 7\nevent: watch\n" +
		`data: {"id":7,"type":"write","path":"/a/b\nc","timestamp":"2026-04-12T19:33:45.123456789Z","size":3,"isDir":false}` +
		"\n\n"
	if got := b.String(); got != want {
		t.Errorf("writeSSE = %q, want %q", got, want)
	}
	b.Reset()
	if err := writeSSEComment(&b, "heartbeat"); err != nil {
		t.Fatal(err)
	}
	if got := b.String(); got != ": heartbeat\n\n" {
		t.Errorf("writeSSEComment = %q", got)
	}
}
