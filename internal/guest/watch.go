package guest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/openslicer/openslicer/api"
)

// Watch defaults (spec §3.10).
const (
	defaultWatchDebounce = 200 * time.Millisecond
	watchHeartbeat       = 15 * time.Second
)

// Watch event types, the events query parameter and api.FSWatchEvent.Type.
// watchTypeError is not a filter: it reports a problem of the watch itself
// (the kernel's queue overflowed, a new directory could not be watched)
// in Message, and does not count towards max_events.
const (
	watchTypeCreate = "create"
	watchTypeWrite  = "write"
	watchTypeRemove = "remove"
	watchTypeRename = "rename"
	watchTypeChmod  = "chmod"
	watchTypeAll    = "all"
	watchTypeError  = "error"
)

// watchOps lists the event types in the order an event carrying several
// is split in.
var watchOps = []struct {
	name string
	op   fsnotify.Op
}{
	{watchTypeCreate, fsnotify.Create},
	{watchTypeWrite, fsnotify.Write},
	{watchTypeRemove, fsnotify.Remove},
	{watchTypeRename, fsnotify.Rename},
	{watchTypeChmod, fsnotify.Chmod},
}

// allWatchOps is every event type.
const allWatchOps = fsnotify.Create | fsnotify.Write | fsnotify.Remove | fsnotify.Rename | fsnotify.Chmod

// watchPlan is a parsed watch request.
type watchPlan struct {
	Paths     []string    // as requested; resolved against the home of UID
	Patterns  []string    // globs (path.Match) on the full path or the base name; none is all
	Ops       fsnotify.Op // event types wanted
	UID       *uint32     // whose home "~" is; nil is the default user
	Recursive bool        // watch subdirectories too, including new ones
	Debounce  time.Duration
	Timeout   time.Duration // 0 is none
	MaxEvents int           // 0 is no limit; one_shot makes it 1
	FirstID   uint64        // id of the first event: one after Last-Event-ID
}

// parseWatchPlan parses the query of GET /v1/fs/watch and its
// Last-Event-ID header. Every problem is api.ErrInvalid naming the
// parameter.
func parseWatchPlan(q url.Values, lastEventID string) (watchPlan, error) {
	p := watchPlan{Paths: q["paths"], Patterns: q["patterns"], Debounce: defaultWatchDebounce, FirstID: 1}
	if len(p.Paths) == 0 {
		return p, fmt.Errorf("%w: paths is required", api.ErrInvalid)
	}
	for _, s := range p.Paths {
		if s == "" {
			return p, fmt.Errorf("%w: paths must not be empty", api.ErrInvalid)
		}
	}
	for _, pat := range p.Patterns {
		if strings.ContainsRune(pat, 0) {
			return p, fmt.Errorf("%w: patterns: %q contains a NUL byte", api.ErrInvalid, pat)
		}
		if _, err := path.Match(pat, ""); err != nil {
			return p, fmt.Errorf("%w: patterns: %q is not a valid glob", api.ErrInvalid, pat)
		}
	}
	var err error
	if p.Ops, err = parseWatchOps(q["events"]); err != nil {
		return p, err
	}
	if v := q.Get("uid"); v != "" {
		uid, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return p, fmt.Errorf("%w: uid %q is not a user id", api.ErrInvalid, v)
		}
		u := uint32(uid)
		p.UID = &u
	}
	if p.Recursive, err = parseOptionalBool("recursive", q.Get("recursive")); err != nil {
		return p, err
	}
	oneShot, err := parseOptionalBool("one_shot", q.Get("one_shot"))
	if err != nil {
		return p, err
	}
	if v := q.Get("debounce"); v != "" {
		if p.Debounce, err = parseWatchDuration("debounce", v); err != nil {
			return p, err
		}
	}
	if p.Timeout, err = parseWatchDuration("timeout", q.Get("timeout")); err != nil {
		return p, err
	}
	if v := q.Get("max_events"); v != "" {
		if p.MaxEvents, err = strconv.Atoi(v); err != nil || p.MaxEvents < 0 {
			return p, fmt.Errorf("%w: max_events %q is not a count", api.ErrInvalid, v)
		}
	}
	if oneShot {
		p.MaxEvents = 1
	}
	if lastEventID != "" {
		last, err := strconv.ParseUint(lastEventID, 10, 64)
		if err != nil {
			return p, fmt.Errorf("%w: Last-Event-ID %q is not an event id", api.ErrInvalid, lastEventID)
		}
		p.FirstID = last + 1
	}
	return p, nil
}

// parseWatchOps parses the events parameter, repeated or comma separated;
// none, or "all", is every type.
func parseWatchOps(values []string) (fsnotify.Op, error) {
	var ops fsnotify.Op
	for _, v := range values {
		for _, name := range strings.Split(v, ",") {
			name = strings.ToLower(strings.TrimSpace(name))
			op, ok := watchOpNamed(name)
			if !ok {
				return 0, fmt.Errorf("%w: events: %q is not one of create, write, remove, rename, chmod, all", api.ErrInvalid, name)
			}
			ops |= op
		}
	}
	if ops == 0 {
		return allWatchOps, nil
	}
	return ops, nil
}

// watchOpNamed returns the op of an event type name.
func watchOpNamed(name string) (fsnotify.Op, bool) {
	if name == watchTypeAll {
		return allWatchOps, true
	}
	for _, o := range watchOps {
		if o.name == name {
			return o.op, true
		}
	}
	return 0, false
}

// parseWatchDuration parses a Go duration parameter; empty is 0, negative
// is invalid.
func parseWatchDuration(param, v string) (time.Duration, error) {
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%w: %s %q is not a duration like 500ms", api.ErrInvalid, param, v)
	}
	return d, nil
}

// watchMatch reports whether name passes the plan's patterns: it matches
// one of them on its full path or its base name (no patterns pass
// everything).
func (p *watchPlan) watchMatch(name string) bool {
	if len(p.Patterns) == 0 {
		return true
	}
	base := path.Base(name)
	for _, pat := range p.Patterns {
		if ok, _ := path.Match(pat, name); ok {
			return true
		}
		if ok, _ := path.Match(pat, base); ok {
			return true
		}
	}
	return false
}

// rawEvent is one change before it gets an id: a path, one event type and
// when it was seen. WasDir says the path was a watched directory, for
// events about paths that are gone.
type rawEvent struct {
	Path   string
	Type   string
	At     time.Time
	WasDir bool
}

// splitEvent turns an fsnotify event into the raw events the plan wants:
// one per type it carries, in watchOps order, and none when the path does
// not match the patterns.
func (p *watchPlan) splitEvent(ev fsnotify.Event, at time.Time) []rawEvent {
	if !p.watchMatch(ev.Name) {
		return nil
	}
	var out []rawEvent
	for _, o := range watchOps {
		if ev.Op.Has(o.op) && p.Ops.Has(o.op) {
			out = append(out, rawEvent{Path: ev.Name, Type: o.name, At: at})
		}
	}
	return out
}

// writeSSE writes ev as one server-sent event: its id, type "watch" and
// the event as JSON on one data line, then the blank line that ends it.
func writeSSE(w io.Writer, ev api.FSWatchEvent) error {
	data, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("encode watch event: %w", err)
	}
	_, err = fmt.Fprintf(w, "id: %d\nevent: watch\ndata: %s\n\n", ev.ID, data)
	return err
}

// writeSSEComment writes an SSE comment, which clients ignore: the
// heartbeat that keeps idle proxies from closing the stream.
func writeSSEComment(w io.Writer, text string) error {
	_, err := fmt.Fprintf(w, ": %s\n\n", text)
	return err
}
