package guest

import (
	"sort"
	"time"
)

// debouncer coalesces repeats of the same path and type. The first event
// of a burst goes out at once and opens a window; repeats inside the
// window are held, and when the window ends the last of them goes out
// (with the time it was seen) and opens the next window. So a burst costs
// at most one event per window, its start is reported promptly, and its
// end is never lost. Time is passed in, so it is a pure state machine.
type debouncer struct {
	window time.Duration
	slots  map[debounceKey]*debounceSlot
}

// debounceKey is what repeats have in common.
type debounceKey struct {
	path, typ string
}

// debounceSlot is the open window of one key.
type debounceSlot struct {
	until   time.Time
	pending *rawEvent // the last repeat seen in the window, if any
}

// newDebouncer returns a debouncer with the given window; 0 lets every
// event through.
func newDebouncer(window time.Duration) *debouncer {
	return &debouncer{window: window, slots: map[debounceKey]*debounceSlot{}}
}

// offer reports whether ev goes out now. When it does not, it is held
// until its window ends (see due). Callers take what is due before
// offering, so held events keep their order.
func (d *debouncer) offer(ev rawEvent) bool {
	if d.window <= 0 {
		return true
	}
	d.expire(ev.At)
	k := debounceKey{ev.Path, ev.Type}
	if s, ok := d.slots[k]; ok && ev.At.Before(s.until) {
		s.pending = &ev
		return false
	}
	d.slots[k] = &debounceSlot{until: ev.At.Add(d.window)}
	return true
}

// due returns the held events whose window has ended by now, oldest
// first, and opens a new window for each.
func (d *debouncer) due(now time.Time) []rawEvent {
	var out []rawEvent
	for _, s := range d.slots {
		if s.pending != nil && !now.Before(s.until) {
			out = append(out, *s.pending)
			s.pending = nil
			s.until = now.Add(d.window)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].At.Equal(out[j].At) {
			return out[i].At.Before(out[j].At)
		}
		if out[i].Path != out[j].Path {
			return out[i].Path < out[j].Path
		}
		return out[i].Type < out[j].Type
	})
	d.expire(now)
	return out
}

// next returns when the first held event is due; false when none is held.
func (d *debouncer) next() (time.Time, bool) {
	var first time.Time
	found := false
	for _, s := range d.slots {
		if s.pending != nil && (!found || s.until.Before(first)) {
			first, found = s.until, true
		}
	}
	return first, found
}

// expire forgets the windows that ended by now with nothing held, so the
// table only holds paths that changed within the last window.
func (d *debouncer) expire(now time.Time) {
	for k, s := range d.slots {
		if s.pending == nil && !now.Before(s.until) {
			delete(d.slots, k)
		}
	}
}
