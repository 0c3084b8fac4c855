package guest

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestDebouncer drives a debouncer with a script of steps at given
// milliseconds: "offer PATH TYPE" records whether the event went out at
// once, "due" records what came due. The result is one line per step.
func TestDebouncer(t *testing.T) {
	tests := []struct {
		name   string
		window time.Duration
		steps  []string
		want   []string
	}{
		{
			name:   "no window",
			window: 0,
			steps:  []string{"0 offer a write", "1 offer a write", "2 due"},
			want:   []string{"0 send a write", "1 send a write", "2 due"},
		},
		{
			name:   "single event",
			window: 100 * time.Millisecond,
			steps:  []string{"0 offer a write", "150 due", "200 offer a write"},
			want:   []string{"0 send a write", "150 due", "200 send a write"},
		},
		{
			name:   "burst: first now, last at the end of the window",
			window: 100 * time.Millisecond,
			steps:  []string{"0 offer a write", "10 offer a write", "20 offer a write", "99 due", "100 due", "150 due", "250 due"},
			want:   []string{"0 send a write", "10 hold", "20 hold", "99 due", "100 due a write@20", "150 due", "250 due"},
		},
		{
			name:   "a trailing event opens a window",
			window: 100 * time.Millisecond,
			steps:  []string{"0 offer a write", "10 offer a write", "100 due", "150 offer a write", "200 due"},
			want:   []string{"0 send a write", "10 hold", "100 due a write@10", "150 hold", "200 due a write@150"},
		},
		{
			name:   "other paths and types are not coalesced",
			window: 100 * time.Millisecond,
			steps:  []string{"0 offer a write", "1 offer b write", "2 offer a chmod", "3 offer a write"},
			want:   []string{"0 send a write", "1 send b write", "2 send a chmod", "3 hold"},
		},
		{
			name:   "due in the order seen",
			window: 100 * time.Millisecond,
			steps:  []string{"0 offer b write", "1 offer a write", "5 offer a write", "6 offer b write", "200 due"},
			want:   []string{"0 send b write", "1 send a write", "5 hold", "6 hold", "200 due a write@5 b write@6"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDebouncer(tt.window)
			var got []string
			for _, step := range tt.steps {
				got = append(got, runDebounceStep(t, d, step))
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("steps %q (-want +got):\n%s", tt.steps, diff)
			}
		})
	}
}

// runDebounceStep runs one step of TestDebouncer and describes its result.
func runDebounceStep(t *testing.T, d *debouncer, step string) string {
	t.Helper()
	f := strings.Fields(step)
	var ms int
	if _, err := fmt.Sscan(f[0], &ms); err != nil {
		t.Fatalf("bad step %q", step)
	}
	now := time.Unix(0, 0).Add(time.Duration(ms) * time.Millisecond)
	switch f[1] {
	case "offer":
		if d.offer(rawEvent{Path: f[2], Type: f[3], At: now}) {
			return fmt.Sprintf("%d send %s %s", ms, f[2], f[3])
		}
		return fmt.Sprintf("%d hold", ms)
	case "due":
		out := fmt.Sprintf("%d due", ms)
		for _, ev := range d.due(now) {
			out += fmt.Sprintf(" %s %s@%d", ev.Path, ev.Type, ev.At.Sub(time.Unix(0, 0)).Milliseconds())
		}
		return out
	}
	t.Fatalf("bad step %q", step)
	return ""
}

func TestDebouncerNext(t *testing.T) {
	d := newDebouncer(100 * time.Millisecond)
	t0 := time.Unix(0, 0)
	if _, ok := d.next(); ok {
		t.Errorf("next() on an empty debouncer reports a time")
	}
	d.offer(rawEvent{Path: "a", Type: "write", At: t0})
	if _, ok := d.next(); ok {
		t.Errorf("next() with nothing held reports a time")
	}
	d.offer(rawEvent{Path: "b", Type: "write", At: t0.Add(30 * time.Millisecond)})
	d.offer(rawEvent{Path: "b", Type: "write", At: t0.Add(40 * time.Millisecond)})
	d.offer(rawEvent{Path: "a", Type: "write", At: t0.Add(50 * time.Millisecond)})
	if got, ok := d.next(); !ok || !got.Equal(t0.Add(100*time.Millisecond)) {
		t.Errorf("next() = %v, %v; want the end of a's window at 100ms", got, ok)
	}
	d.due(t0.Add(100 * time.Millisecond))
	if got, ok := d.next(); !ok || !got.Equal(t0.Add(130*time.Millisecond)) {
		t.Errorf("next() = %v, %v; want the end of b's window at 130ms", got, ok)
	}
	d.due(t0.Add(130 * time.Millisecond))
	if _, ok := d.next(); ok {
		t.Errorf("next() after everything was due reports a time")
	}
	d.due(t0.Add(time.Second))
	if len(d.slots) != 0 {
		t.Errorf("after every window ended, %d slots are kept", len(d.slots))
	}
}
