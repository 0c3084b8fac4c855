package guest

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/openslicer/openslicer/api"
)

// ringSummary is what a test checks of a ring after its appends.
type ringSummary struct {
	IDs                    []uint64 // ids held, oldest first
	Held, Written, Dropped int64
	DroppedFrames, NextID  uint64
}

func summarize(r *frameRing) ringSummary {
	s := ringSummary{Held: r.held, Written: r.written, Dropped: r.dropped, DroppedFrames: r.droppedFrames, NextID: r.nextID}
	for _, e := range r.entries {
		s.IDs = append(s.IDs, e.id)
	}
	return s
}

// ringWith appends a started frame (when sizes starts with 0) and output
// frames of the given payload sizes to a ring of limit bytes.
func ringWith(limit int64, sizes ...int) *frameRing {
	r := newFrameRing(limit)
	for _, n := range sizes {
		kind := api.FrameStdout
		if n == 0 {
			kind = api.FrameStarted
		}
		r.append(kind, time.Time{}, []byte(strings.Repeat("x", n)))
	}
	return r
}

func TestFrameRingAppend(t *testing.T) {
	tests := []struct {
		name  string
		limit int64
		sizes []int
		want  ringSummary
	}{
		{
			name: "empty", limit: 10,
			want: ringSummary{NextID: 1},
		},
		{
			name: "everything fits", limit: 10, sizes: []int{0, 4, 6},
			want: ringSummary{IDs: []uint64{1, 2, 3}, Held: 10, Written: 10, NextID: 4},
		},
		{
			name: "evicts the oldest, the started frame with it", limit: 10, sizes: []int{0, 4, 6, 3},
			want: ringSummary{IDs: []uint64{3, 4}, Held: 9, Written: 13, Dropped: 4, DroppedFrames: 2, NextID: 5},
		},
		{
			name: "evicts as many as it takes", limit: 10, sizes: []int{3, 3, 3, 10},
			want: ringSummary{IDs: []uint64{4}, Held: 10, Written: 19, Dropped: 9, DroppedFrames: 3, NextID: 5},
		},
		{
			name: "a payload over the limit is split", limit: 4, sizes: []int{0, 10},
			// 10 bytes become frames 2 (4), 3 (4) and 4 (2); only 4 is left.
			want: ringSummary{IDs: []uint64{4}, Held: 2, Written: 10, Dropped: 8, DroppedFrames: 3, NextID: 5},
		},
		{
			name: "empty frames cost no bytes", limit: 4, sizes: []int{0, 4, 0},
			want: ringSummary{IDs: []uint64{1, 2, 3}, Held: 4, Written: 4, NextID: 4},
		},
		{
			name: "frame count is bounded too", limit: 1, sizes: append([]int{0}, make([]int, minEntries)...),
			want: ringSummary{IDs: idRange(2, minEntries+1), NextID: minEntries + 2, DroppedFrames: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := summarize(ringWith(tt.limit, tt.sizes...))
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ring after appending %v to a %d-byte ring (-want +got):\n%s", tt.sizes, tt.limit, diff)
			}
		})
	}
}

// idRange returns the ids from..to.
func idRange(from, to uint64) []uint64 {
	var ids []uint64
	for id := from; id <= to; id++ {
		ids = append(ids, id)
	}
	return ids
}

func TestFrameRingAppendReturnsLastID(t *testing.T) {
	r := newFrameRing(4)
	if got := r.append(api.FrameStarted, time.Time{}, nil); got != 1 {
		t.Errorf("append(started) = %d, want 1", got)
	}
	if got := r.append(api.FrameStdout, time.Time{}, []byte("123456789")); got != 4 {
		t.Errorf("append(9 bytes) to a 4-byte ring = %d, want 4 (three pieces)", got)
	}
	if got, want := string(r.entries[len(r.entries)-1].data), "9"; got != want {
		t.Errorf("last piece = %q, want %q", got, want)
	}
}

func TestFrameRingRead(t *testing.T) {
	// Ring of 10 bytes after frames 1 (started, 0), 2 (4), 3 (6), 4 (3):
	// 1 and 2 are evicted (4 bytes), 3 and 4 are held.
	evicted := func() *frameRing { return ringWith(10, 0, 4, 6, 3) }
	tests := []struct {
		name       string
		ring       func() *frameRing
		from       ringCursor
		wantGap    ringGap
		wantIDs    []uint64
		wantCursor ringCursor
	}{
		{
			name: "from the start, nothing evicted",
			ring: func() *frameRing { return ringWith(10, 0, 4) }, from: startCursor(0),
			wantIDs: []uint64{1, 2}, wantCursor: ringCursor{id: 3, offset: 4},
		},
		{
			name: "from the middle",
			ring: func() *frameRing { return ringWith(10, 0, 4, 5) }, from: startCursor(3),
			wantIDs: []uint64{3}, wantCursor: ringCursor{id: 4, offset: 9},
		},
		{
			name: "from the start after eviction: exact gap",
			ring: evicted, from: startCursor(1),
			wantGap: ringGap{frames: 2, bytes: 4, lastID: 2, exact: true},
			wantIDs: []uint64{3, 4}, wantCursor: ringCursor{id: 5, offset: 13},
		},
		{
			name: "a follower's own cursor: exact gap",
			ring: evicted, from: ringCursor{id: 2, offset: 0},
			wantGap: ringGap{frames: 1, bytes: 4, lastID: 2, exact: true},
			wantIDs: []uint64{3, 4}, wantCursor: ringCursor{id: 5, offset: 13},
		},
		{
			name: "an evicted from_id: bytes are an upper bound",
			ring: evicted, from: startCursor(2),
			wantGap: ringGap{frames: 1, bytes: 4, lastID: 2},
			wantIDs: []uint64{3, 4}, wantCursor: ringCursor{id: 5, offset: 13},
		},
		{
			name: "the oldest held: no gap",
			ring: evicted, from: startCursor(3),
			wantIDs: []uint64{3, 4}, wantCursor: ringCursor{id: 5, offset: 13},
		},
		{
			name: "at the live cursor",
			ring: evicted, from: ringCursor{id: 5, offset: 13},
			wantCursor: ringCursor{id: 5, offset: 13},
		},
		{
			name: "beyond the live cursor",
			ring: evicted, from: startCursor(9),
			wantCursor: ringCursor{id: 9, offset: -1},
		},
		{
			name: "empty ring",
			ring: func() *frameRing { return newFrameRing(10) }, from: startCursor(0),
			wantCursor: ringCursor{id: 1, offset: 0},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gap, entries, next := tt.ring().read(tt.from)
			var ids []uint64
			for _, e := range entries {
				ids = append(ids, e.id)
			}
			if gap != tt.wantGap {
				t.Errorf("read(%+v) gap = %+v, want %+v", tt.from, gap, tt.wantGap)
			}
			if diff := cmp.Diff(tt.wantIDs, ids); diff != "" {
				t.Errorf("read(%+v) ids (-want +got):\n%s", tt.from, diff)
			}
			if next != tt.wantCursor {
				t.Errorf("read(%+v) cursor = %+v, want %+v", tt.from, next, tt.wantCursor)
			}
		})
	}
}

func TestFrameRingReadCopies(t *testing.T) {
	r := ringWith(10, 0, 4)
	_, entries, _ := r.read(startCursor(0))
	r.append(api.FrameStdout, time.Time{}, []byte("123456789")) // evicts both
	if entries[0].id != 1 || entries[1].id != 2 || string(entries[1].data) != "xxxx" {
		t.Errorf("entries read before eviction changed: %+v", entries)
	}
}
