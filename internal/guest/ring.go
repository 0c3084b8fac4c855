package guest

import "time"

// frameRing is the log of one background exec: the frames it produced,
// each with a per-exec id counting from 1, of which it keeps the newest up
// to a budget of payload bytes. It is plain data with no locking: the
// registry guards it and wakes the readers that follow it.
//
// Older frames are evicted first, whole, and counted, so a reader whose
// history is gone learns how much it missed (read's gap). A payload larger
// than the whole budget is stored as several frames of at most limit
// bytes, so that every frame fits and eviction stays frame by frame.
// Besides the payload budget the ring keeps at most maxEntries frames, so
// that a process writing a byte at a time cannot fill memory with frame
// bookkeeping; evicting for that reason is counted the same way.
type frameRing struct {
	limit      int64 // payload bytes held at most
	maxEntries int   // frames held at most

	entries []ringEntry // oldest first; ids are consecutive
	held    int64       // payload bytes in entries

	nextID        uint64 // id of the next frame appended
	written       int64  // payload bytes ever appended
	dropped       int64  // payload bytes evicted
	droppedFrames uint64 // frames evicted
}

// ringEntry is one frame held by the ring.
type ringEntry struct {
	id     uint64
	kind   string    // api.FrameStarted, FrameStdout, FrameStderr, FrameExit
	at     time.Time // when it was produced
	data   []byte    // payload; never modified once appended
	offset int64     // payload bytes appended before this frame
}

// ringCursor is a reader's position: the id of the next frame it wants,
// and the payload offset where that frame starts, or -1 when the offset is
// not known (a from_id a client asked for, beyond the first frame).
type ringCursor struct {
	id     uint64
	offset int64
}

// ringGap is the history a read asked for that the ring no longer holds.
type ringGap struct {
	frames uint64 // frames missed; zero when nothing was
	bytes  int64  // their payload bytes (an upper bound unless exact)
	lastID uint64 // id of the last frame missed
	exact  bool   // bytes is exact: the cursor's offset was known
}

// Budget of frame bookkeeping: one frame per bytesPerEntry bytes of
// payload budget, but never fewer than minEntries.
const (
	bytesPerEntry = 64
	minEntries    = 64
)

// newFrameRing returns an empty ring keeping limit (at least 1) bytes of
// payload.
func newFrameRing(limit int64) *frameRing {
	limit = max(limit, 1)
	return &frameRing{
		limit:      limit,
		maxEntries: int(max(limit/bytesPerEntry, minEntries)),
		nextID:     1,
	}
}

// startCursor is the cursor for a from_id: 0 and 1 both mean the first
// frame, whose offset is 0.
func startCursor(fromID uint64) ringCursor {
	if fromID <= 1 {
		return ringCursor{id: 1, offset: 0}
	}
	return ringCursor{id: fromID, offset: -1}
}

// append adds a frame of kind produced at at, split into frames of at most
// limit bytes when its payload is larger, evicting the oldest frames to
// make room. It returns the id of the last frame added.
func (r *frameRing) append(kind string, at time.Time, data []byte) uint64 {
	for {
		piece := data
		if int64(len(piece)) > r.limit {
			piece = data[:r.limit]
		}
		data = data[len(piece):]
		r.appendOne(ringEntry{kind: kind, at: at, data: piece})
		if len(data) == 0 {
			return r.nextID - 1
		}
	}
}

// appendOne adds e, whose payload fits the budget, after evicting what it
// does not leave room for.
func (r *frameRing) appendOne(e ringEntry) {
	n := int64(len(e.data))
	for len(r.entries) > 0 && (r.held+n > r.limit || len(r.entries) >= r.maxEntries) {
		r.evictOldest()
	}
	e.id, e.offset = r.nextID, r.written
	r.entries = append(r.entries, e)
	r.nextID++
	r.held += n
	r.written += n
}

// evictOldest drops the oldest frame and counts it.
func (r *frameRing) evictOldest() {
	n := int64(len(r.entries[0].data))
	r.entries[0] = ringEntry{} // let the payload go before the array does
	r.entries = r.entries[1:]
	r.held -= n
	r.dropped += n
	r.droppedFrames++
}

// oldestID is the id of the oldest frame held, or nextID when none is.
func (r *frameRing) oldestID() uint64 {
	if len(r.entries) == 0 {
		return r.nextID
	}
	return r.entries[0].id
}

// read returns what a reader at c has not seen: the gap, if frames it
// wants were evicted, then the frames held from c on (a copy of the
// bookkeeping; the payloads are shared and never change), and the cursor
// after them. A cursor beyond the newest frame reads nothing and stays.
func (r *frameRing) read(c ringCursor) (ringGap, []ringEntry, ringCursor) {
	var gap ringGap
	oldest := r.oldestID()
	if c.id < oldest {
		gap = ringGap{frames: oldest - c.id, lastID: oldest - 1, bytes: r.dropped, exact: c.offset >= 0}
		if gap.exact {
			// The oldest frame held starts where the evicted bytes end.
			gap.bytes = r.dropped - c.offset
		}
		c = ringCursor{id: oldest, offset: r.dropped}
	}
	if c.id >= r.nextID {
		return gap, nil, c
	}
	held := r.entries[c.id-oldest:]
	out := make([]ringEntry, len(held))
	copy(out, held)
	last := out[len(out)-1]
	return gap, out, ringCursor{id: last.id + 1, offset: last.offset + int64(len(last.data))}
}
