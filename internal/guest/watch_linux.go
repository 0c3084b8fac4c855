package guest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
	"golang.org/x/sys/unix"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/agent"
)

// fsWatch streams filesystem changes as server-sent events (spec §3.10).
//
// Everything that can fail is checked before the 200: the query (400),
// and that every path exists (404) and is watched, so a caller that has
// the 200 knows later changes will be seen. The watch acts as uid
// (default: the default user; see actor.do) for its whole life: "~" in
// paths is its home, it watches only what that user may read (inotify
// needs read permission; 403 otherwise), subdirectories it cannot read
// are not watched, and sizes are read with its permissions.
//
// What inotify reports is passed on as fsnotify names it: a rename is
// reported for the old path, with a create for the new one when it lands
// in a watched directory; removing a file may report a chmod (its link
// count) before the remove. With recursive, a directory created or moved
// in is watched at once, and what it already holds by then is reported
// as created, so mkdir -p a/b/c && touch a/b/c/f reports f. Debouncing is
// per path and type (see debouncer): the first event goes out at once,
// and one trailing event follows at the end of the window when repeats
// were held; held repeats are dropped when the stream ends. Problems of
// the watch itself (the kernel's queue overflowed) are events of type
// "error" with a message; they take an id but do not count as events.
//
// The stream ends with the request, at the timeout, after max_events, or
// when nothing is watched any more (every watched path was removed or
// renamed); the watches are released when it does.
func (s *Server) fsWatch(w http.ResponseWriter, r *http.Request) {
	plan, err := parseWatchPlan(r.URL.Query(), r.Header.Get("Last-Event-ID"))
	if err != nil {
		agent.WriteError(w, err)
		return
	}
	act, err := s.actor(plan.UID, nil)
	if err != nil {
		agent.WriteError(w, err)
		return
	}
	if err := act.do(func() error { return s.watchAs(w, r, plan, act.Home) }); err != nil {
		agent.WriteError(w, err)
	}
}

// watchAs is fsWatch once the agent acts as the user whose home is home.
// An error is returned only before the stream has started.
func (s *Server) watchAs(w http.ResponseWriter, r *http.Request, plan watchPlan, home string) error {
	roots := make([]string, len(plan.Paths))
	for i, p := range plan.Paths {
		var err error
		if roots[i], err = guestPath("paths", p, home); err != nil {
			return err
		}
	}
	run, err := startWatch(plan, roots, s.log)
	if err != nil {
		return err
	}
	defer run.close()

	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		return nil
	}
	ctx := r.Context()
	if plan.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, plan.Timeout)
		defer cancel()
	}
	err = run.loop(ctx, sseSink{w: w, flush: rc.Flush}, watchHeartbeat)
	s.log.Debug("watch ended", "paths", roots, "events", run.sent, "err", err)
	return nil
}

// sseSink writes server-sent events to a response, flushing each.
type sseSink struct {
	w     io.Writer
	flush func() error
}

// event writes and flushes one watch event.
func (s sseSink) event(ev api.FSWatchEvent) error {
	if err := writeSSE(s.w, ev); err != nil {
		return err
	}
	return s.flush()
}

// comment writes and flushes one comment.
func (s sseSink) comment(text string) error {
	if err := writeSSEComment(s.w, text); err != nil {
		return err
	}
	return s.flush()
}

// watchRun is one running watch: the inotify watches and what the stream
// has sent.
type watchRun struct {
	plan   watchPlan
	log    *slog.Logger
	w      *fsnotify.Watcher
	roots  map[string]bool // the requested paths
	dirs   map[string]bool // every watched directory
	moved  map[string]bool // renamed subdirectories whose own rename report is still to come
	prev   fsnotify.Event  // the event handled last
	deb    *debouncer
	nextID uint64
	sent   int  // events that count towards max_events
	ended  bool // nothing is watched any more
}

// startWatch watches roots as plan says. A missing root is not found.
func startWatch(plan watchPlan, roots []string, log *slog.Logger) (*watchRun, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("%w: start inotify: %v", api.ErrUnavailable, err)
	}
	r := &watchRun{
		plan:   plan,
		log:    log,
		w:      w,
		roots:  map[string]bool{},
		dirs:   map[string]bool{},
		moved:  map[string]bool{},
		deb:    newDebouncer(plan.Debounce),
		nextID: plan.FirstID,
	}
	for _, root := range roots {
		if err := r.addRoot(root); err != nil {
			r.close()
			return nil, err
		}
	}
	return r, nil
}

// close releases every watch.
func (r *watchRun) close() {
	if err := r.w.Close(); err != nil {
		r.log.Debug("close watcher", "err", err)
	}
}

// addRoot watches one requested path, and with recursive every directory
// under it.
func (r *watchRun) addRoot(root string) error {
	fi, err := os.Stat(root)
	if err != nil {
		return fsOpError("watch", root, err)
	}
	r.roots[root] = true
	if fi.IsDir() && r.plan.Recursive {
		_, err := r.addTree(root)
		return err
	}
	if fi.IsDir() {
		r.dirs[root] = true
	}
	return r.watch(root)
}

// addTree watches dir and every directory under it (symlinks are not
// followed) and returns the paths found under dir. Subdirectories that
// cannot be read are skipped.
func (r *watchRun) addTree(dir string) ([]string, error) {
	var found []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == dir {
				return fsOpError("watch", p, err)
			}
			r.log.Debug("watch: skip unreadable directory", "path", p, "err", err)
			return nil
		}
		if p != dir {
			found = append(found, p)
		}
		if !d.IsDir() {
			return nil
		}
		if err := r.watch(p); err != nil {
			return err
		}
		r.dirs[p] = true
		return nil
	})
	return found, err
}

// watch adds one inotify watch.
func (r *watchRun) watch(p string) error {
	err := r.w.Add(p)
	switch {
	case errors.Is(err, unix.ENOSPC):
		return fmt.Errorf("%w: watch %s: inotify watch limit reached (fs.inotify.max_user_watches)", api.ErrUnavailable, p)
	case err != nil:
		return fsOpError("watch", p, err)
	}
	return nil
}

// unwatch drops the watches on p and everything under it, after p was
// removed or renamed: a renamed directory's watches would report its old
// paths. A renamed subdirectory is remembered, because its own watch
// reports the rename a second time.
func (r *watchRun) unwatch(p string, renamed bool) {
	if renamed && r.dirs[p] && !r.roots[p] {
		r.moved[p] = true
	}
	for d := range r.dirs {
		if d == p || strings.HasPrefix(d, p+"/") {
			_ = r.w.Remove(d) // the kernel may have dropped it already
			delete(r.dirs, d)
		}
	}
}

// loop sends events until ctx ends, the plan's limit is reached or
// nothing is watched. It returns nil then, or the error of a failed write.
func (r *watchRun) loop(ctx context.Context, out sseSink, heartbeat time.Duration) error {
	tick := time.NewTicker(heartbeat)
	defer tick.Stop()
	held := time.NewTimer(time.Hour) // fires when a debounced event is due
	held.Stop()
	defer held.Stop()
	for !r.done() {
		var err error
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			err = out.comment("heartbeat")
		case <-held.C:
			err = r.sendDue(out, time.Now())
		case ev, ok := <-r.w.Events:
			if !ok {
				return nil
			}
			err = r.handle(out, ev, time.Now())
		case werr, ok := <-r.w.Errors:
			if !ok {
				return nil
			}
			err = r.sendError(out, werr, time.Now())
		}
		if err != nil {
			return err
		}
		if at, ok := r.deb.next(); ok {
			held.Reset(time.Until(at))
		} else {
			held.Stop()
		}
	}
	return nil
}

// done reports whether the stream is over: max_events sent, or nothing
// left to watch.
func (r *watchRun) done() bool {
	return r.ended || (r.plan.MaxEvents > 0 && r.sent >= r.plan.MaxEvents)
}

// handle processes one inotify event: keeps the recursive watches up to
// date, then sends what the plan wants of it, debounced.
func (r *watchRun) handle(out sseSink, ev fsnotify.Event, now time.Time) error {
	if err := r.sendDue(out, now); err != nil {
		return err
	}
	if r.duplicate(ev) {
		return nil
	}
	wasDir := r.dirs[ev.Name]
	var created []string
	gone := false // nothing watched any more, once this event is sent
	switch {
	case ev.Has(fsnotify.Create):
		delete(r.moved, ev.Name)
		if r.plan.Recursive {
			created = r.watchNewDir(out, ev.Name, now)
		}
	case ev.Has(fsnotify.Remove), ev.Has(fsnotify.Rename):
		r.unwatch(ev.Name, ev.Has(fsnotify.Rename))
		gone = len(r.w.WatchList()) == 0
	}
	raws := r.plan.splitEvent(ev, now)
	for i := range raws {
		raws[i].WasDir = wasDir
	}
	for _, p := range created {
		raws = append(raws, r.plan.splitEvent(fsnotify.Event{Name: p, Op: fsnotify.Create}, now)...)
	}
	for _, raw := range raws {
		if r.deb.offer(raw) {
			if err := r.send(out, raw); err != nil {
				return err
			}
		}
	}
	r.ended = gone
	return nil
}

// duplicate reports whether ev repeats what the watch of a directory's
// parent reported already. A watched subdirectory is watched twice: as
// itself, and as an entry of its parent. A change of its attributes comes
// from both, one right after the other; its rename comes from the parent,
// then after the create of its new name from itself (see unwatch).
func (r *watchRun) duplicate(ev fsnotify.Event) bool {
	prev := r.prev
	r.prev = ev
	switch {
	case ev.Op == fsnotify.Rename && r.moved[ev.Name]:
		delete(r.moved, ev.Name)
		return true
	case ev.Op == fsnotify.Chmod && prev.Op == ev.Op && prev.Name == ev.Name &&
		r.dirs[ev.Name] && r.dirs[filepath.Dir(ev.Name)]:
		r.prev = fsnotify.Event{} // the pair is complete; the next chmod is news
		return true
	}
	return false
}

// watchNewDir watches a directory created (or moved) under a recursive
// watch, with everything under it, and returns what it found there: those
// entries may have been created before the watch was in place, so they
// are reported as created. Not a directory is nothing to do.
func (r *watchRun) watchNewDir(out sseSink, p string, now time.Time) []string {
	fi, err := os.Lstat(p)
	if err != nil || !fi.IsDir() {
		return nil
	}
	found, err := r.addTree(p)
	if err != nil && !errors.Is(err, api.ErrNotFound) {
		if serr := r.sendError(out, err, now); serr != nil {
			r.log.Debug("watch: send error event", "err", serr)
		}
	}
	return found
}

// sendDue sends the debounced events whose window has ended.
func (r *watchRun) sendDue(out sseSink, now time.Time) error {
	for _, raw := range r.deb.due(now) {
		if err := r.send(out, raw); err != nil {
			return err
		}
	}
	return nil
}

// send sends one event, with size and type from an lstat when the path
// still exists. Nothing is sent once the stream is done.
func (r *watchRun) send(out sseSink, raw rawEvent) error {
	if r.done() {
		return nil
	}
	ev := api.FSWatchEvent{
		Type:      raw.Type,
		Path:      raw.Path,
		Timestamp: raw.At.UTC().Format(time.RFC3339Nano),
		IsDir:     raw.WasDir,
	}
	if fi, err := os.Lstat(raw.Path); err == nil {
		ev.Size, ev.IsDir = fi.Size(), fi.IsDir()
	}
	ev.ID = r.nextID
	r.nextID++
	r.sent++
	return out.event(ev)
}

// sendError reports a problem of the watch itself as an event of type
// error; it takes an id but does not count towards max_events.
func (r *watchRun) sendError(out sseSink, err error, now time.Time) error {
	if r.done() {
		return nil
	}
	ev := api.FSWatchEvent{
		ID:        r.nextID,
		Type:      watchTypeError,
		Timestamp: now.UTC().Format(time.RFC3339Nano),
		Message:   err.Error(),
	}
	r.nextID++
	return out.event(ev)
}
