package guest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/agent"
)

// watchDeadline bounds every watch a test opens: waiting for an event
// fails then, instead of hanging.
const watchDeadline = 30 * time.Second

// sseStream reads a watch's server-sent events and checks their framing
// and that ids count up by one.
type sseStream struct {
	t      *testing.T
	resp   *http.Response
	r      *bufio.Reader
	nextID uint64
	cancel context.CancelFunc
}

// openWatch starts a watch with query q (and Last-Event-ID last, unless
// empty) and returns its stream; the watch is in place when it returns.
// The stream is closed at the end of the test.
func openWatch(t *testing.T, h *harness, q url.Values, last string) *sseStream {
	t.Helper()
	resp, cancel := watchRequest(t, h, q, last)
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("watch %s = %d %s, want 200", q.Encode(), resp.StatusCode, b)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("watch Content-Type = %q, want text/event-stream", ct)
	}
	s := &sseStream{t: t, resp: resp, r: bufio.NewReader(resp.Body), nextID: 1, cancel: cancel}
	if last != "" {
		n, _ := strconv.ParseUint(last, 10, 64)
		s.nextID = n + 1
	}
	return s
}

// watchRequest sends a watch request and returns the answer as it is.
// Unless q names a uid, the watch acts as the test's own user, which
// works with and without root.
func watchRequest(t *testing.T, h *harness, q url.Values, last string) (*http.Response, context.CancelFunc) {
	t.Helper()
	if !q.Has("uid") {
		q = asMe(q)
	}
	ctx, cancel := context.WithTimeout(context.Background(), watchDeadline)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://agent"+agent.PathFSWatch+"?"+q.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/event-stream")
	if last != "" {
		req.Header.Set("Last-Event-ID", last)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("watch %s: %v", q.Encode(), err)
	}
	t.Cleanup(func() { cancel(); resp.Body.Close() })
	return resp, cancel
}

// next returns the next event, skipping comments; io.EOF when the stream
// ended.
func (s *sseStream) next() (api.FSWatchEvent, error) {
	s.t.Helper()
	var lines []string
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			if line != "" || len(lines) > 0 {
				s.t.Errorf("stream ends inside an event: %q %q", lines, line)
			}
			return api.FSWatchEvent{}, err
		}
		line = strings.TrimSuffix(line, "\n")
		if line != "" {
			lines = append(lines, line)
			continue
		}
		if len(lines) == 1 && strings.HasPrefix(lines[0], ":") {
			lines = nil // a comment: the heartbeat
			continue
		}
		return s.decode(lines), nil
	}
}

// decode checks the lines of one event block and returns the event.
func (s *sseStream) decode(lines []string) api.FSWatchEvent {
	s.t.Helper()
	var ev api.FSWatchEvent
	if len(lines) != 3 || lines[1] != "event: watch" || !strings.HasPrefix(lines[2], "data: ") {
		s.t.Fatalf("event block %q, want id, event: watch, data", lines)
	}
	if err := json.Unmarshal([]byte(strings.TrimPrefix(lines[2], "data: ")), &ev); err != nil {
		s.t.Fatalf("decode event %q: %v", lines[2], err)
	}
	if want := fmt.Sprintf("id: %d", s.nextID); lines[0] != want || ev.ID != s.nextID {
		s.t.Errorf("event %q with id %d, want %q", lines[0], ev.ID, want)
	}
	s.nextID = ev.ID + 1
	if _, err := time.Parse(time.RFC3339Nano, ev.Timestamp); err != nil {
		s.t.Errorf("event %+v: timestamp: %v", ev, err)
	}
	return ev
}

// waitFor reads events until one has type typ and path p, and returns it.
func (s *sseStream) waitFor(typ, p string) api.FSWatchEvent {
	s.t.Helper()
	for {
		ev, err := s.next()
		if err != nil {
			s.t.Fatalf("waiting for %s %s: %v", typ, p, err)
		}
		if ev.Type == typ && ev.Path == p {
			return ev
		}
	}
}

// waitEnd reads until the stream ends and returns the events read.
func (s *sseStream) waitEnd() []api.FSWatchEvent {
	s.t.Helper()
	var evs []api.FSWatchEvent
	for {
		ev, err := s.next()
		if errors.Is(err, io.EOF) {
			return evs
		}
		if err != nil {
			s.t.Fatalf("waiting for the end of the stream: %v (after %+v)", err, evs)
		}
		evs = append(evs, ev)
	}
}

// watchQuery is a watch query of key/value pairs.
func watchQuery(kv ...string) url.Values {
	q := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		q.Add(kv[i], kv[i+1])
	}
	return q
}

// must fails the test on err.
func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestFSWatchEvents(t *testing.T) {
	h := newHarness(t)
	dir := t.TempDir()
	s := openWatch(t, h, watchQuery("paths", dir), "")
	a, b := filepath.Join(dir, "a.txt"), filepath.Join(dir, "b.txt")

	f, err := os.Create(a)
	must(t, err)
	if ev := s.waitFor("create", a); ev.IsDir || ev.Size != 0 {
		t.Errorf("create event %+v, want a file of size 0", ev)
	}
	_, err = f.WriteString("hello")
	must(t, err)
	must(t, f.Close())
	if ev := s.waitFor("write", a); ev.Size != 5 {
		t.Errorf("write event %+v, want size 5", ev)
	}
	must(t, os.Chmod(a, 0o600))
	s.waitFor("chmod", a)
	must(t, os.Rename(a, b))
	s.waitFor("rename", a)
	s.waitFor("create", b)
	must(t, os.Mkdir(filepath.Join(dir, "sub"), 0o755))
	if ev := s.waitFor("create", filepath.Join(dir, "sub")); !ev.IsDir {
		t.Errorf("create event %+v of a directory, want isDir", ev)
	}
	must(t, os.Remove(b))
	s.waitFor("remove", b)
}

func TestFSWatchFilters(t *testing.T) {
	h := newHarness(t)
	dir := t.TempDir()
	s := openWatch(t, h, watchQuery("paths", dir, "patterns", "*.txt", "patterns", dir+"/exact", "events", "create"), "")
	for _, name := range []string{"a.log", "b.txt", "exact", "c.log"} {
		must(t, os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o644))
	}
	must(t, os.Remove(filepath.Join(dir, "b.txt")))
	must(t, os.WriteFile(filepath.Join(dir, "d.txt"), nil, 0o644))
	var got []string
	for len(got) < 3 {
		ev, err := s.next()
		if err != nil {
			t.Fatalf("after %q: %v", got, err)
		}
		got = append(got, ev.Type+" "+filepath.Base(ev.Path))
	}
	if want := "create b.txt,create exact,create d.txt"; strings.Join(got, ",") != want {
		t.Errorf("events %q, want %q", got, want)
	}
}

func TestFSWatchRecursive(t *testing.T) {
	h := newHarness(t)
	dir := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(dir, "old", "deep"), 0o755))
	s := openWatch(t, h, watchQuery("paths", dir, "recursive", "true", "events", "create", "events", "write"), "")

	deepFile := filepath.Join(dir, "old", "deep", "f")
	must(t, os.WriteFile(deepFile, []byte("x"), 0o644))
	s.waitFor("create", deepFile)

	sub := filepath.Join(dir, "new")
	must(t, os.Mkdir(sub, 0o755))
	s.waitFor("create", sub)
	must(t, os.WriteFile(filepath.Join(sub, "f"), []byte("x"), 0o644))
	s.waitFor("create", filepath.Join(sub, "f"))

	// Created faster than a watch can be put on each directory.
	nested := filepath.Join(dir, "n1", "n2", "n3")
	must(t, os.MkdirAll(nested, 0o755))
	must(t, os.WriteFile(filepath.Join(nested, "f"), []byte("x"), 0o644))
	s.waitFor("create", filepath.Join(nested, "f"))
	must(t, os.WriteFile(filepath.Join(nested, "g"), []byte("x"), 0o644))
	s.waitFor("write", filepath.Join(nested, "g"))

	// A moved directory is watched at its new path.
	moved := filepath.Join(dir, "moved")
	must(t, os.Rename(filepath.Join(dir, "n1"), moved))
	s.waitFor("create", moved)
	must(t, os.WriteFile(filepath.Join(moved, "n2", "h"), []byte("x"), 0o644))
	s.waitFor("create", filepath.Join(moved, "n2", "h"))
}

func TestFSWatchHome(t *testing.T) {
	h := newHarness(t)
	home := withSelf(t, h)
	s := openWatch(t, h, watchQuery("paths", "~", "uid", strconv.Itoa(os.Getuid())), "")
	must(t, os.WriteFile(filepath.Join(home, "f"), nil, 0o644))
	s.waitFor("create", filepath.Join(home, "f"))
}

func TestFSWatchEnds(t *testing.T) {
	tests := []struct {
		name  string
		query []string
		want  int // events before the end; -1 is any number
	}{
		{"max_events", []string{"max_events", "2"}, 2},
		{"one_shot", []string{"one_shot", "true"}, 1},
		{"timeout", []string{"timeout", "300ms", "events", "remove"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			dir := t.TempDir()
			s := openWatch(t, h, watchQuery(append([]string{"paths", dir, "debounce", "0s"}, tt.query...)...), "")
			for i := range 3 {
				must(t, os.WriteFile(filepath.Join(dir, strconv.Itoa(i)), nil, 0o644))
			}
			if got := s.waitEnd(); len(got) != tt.want {
				t.Errorf("%d events before the end, want %d: %+v", len(got), tt.want, got)
			}
		})
	}
}

func TestFSWatchEndsWhenNothingIsLeft(t *testing.T) {
	h := newHarness(t)
	dir := filepath.Join(t.TempDir(), "w")
	must(t, os.Mkdir(dir, 0o755))
	f := filepath.Join(t.TempDir(), "f")
	must(t, os.WriteFile(f, nil, 0o644))
	s := openWatch(t, h, watchQuery("paths", dir, "paths", f, "events", "remove"), "")
	must(t, os.Remove(f))
	s.waitFor("remove", f)
	must(t, os.Remove(dir))
	if ev := s.waitFor("remove", dir); !ev.IsDir {
		t.Errorf("remove event %+v of a watched directory, want isDir", ev)
	}
	if got := s.waitEnd(); len(got) != 0 {
		t.Errorf("events after everything was removed: %+v", got)
	}
}

func TestFSWatchLastEventID(t *testing.T) {
	h := newHarness(t)
	dir := t.TempDir()
	s := openWatch(t, h, watchQuery("paths", dir, "max_events", "2"), "41")
	must(t, os.WriteFile(filepath.Join(dir, "a"), nil, 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "b"), nil, 0o644))
	evs := s.waitEnd() // next checks the ids are 42, 43
	if len(evs) != 2 || evs[0].ID != 42 {
		t.Errorf("events %+v, want two from id 42", evs)
	}
}

func TestFSWatchErrors(t *testing.T) {
	h := newHarness(t)
	dir := t.TempDir()
	tests := []struct {
		name   string
		query  url.Values
		last   string
		status int
		msg    string
	}{
		{"no paths", watchQuery("recursive", "true"), "", http.StatusBadRequest, "paths is required"},
		{"unknown event", watchQuery("paths", dir, "events", "open"), "", http.StatusBadRequest, `"open"`},
		{"bad debounce", watchQuery("paths", dir, "debounce", "soon"), "", http.StatusBadRequest, "debounce"},
		{"bad Last-Event-ID", watchQuery("paths", dir), "x1", http.StatusBadRequest, "Last-Event-ID"},
		{"missing path", watchQuery("paths", dir, "paths", dir+"/nope"), "", http.StatusNotFound, dir + "/nope"},
	}
	for _, tt := range tests {
		resp, _ := watchRequest(t, h, tt.query, tt.last)
		b, err := io.ReadAll(resp.Body)
		must(t, err)
		checkFSError(t, "watch "+tt.name, resp.StatusCode, b, tt.status, tt.msg)
	}
}

// inotifyFDs counts this process's inotify descriptors.
func inotifyFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	must(t, err)
	n := 0
	for _, e := range ents {
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && l == "anon_inode:inotify" {
			n++
		}
	}
	return n
}

// waitInotifyFDs waits until the process has want inotify descriptors.
func waitInotifyFDs(t *testing.T, want int) {
	t.Helper()
	deadline := time.Now().Add(watchDeadline)
	for inotifyFDs(t) != want {
		if time.Now().After(deadline) {
			t.Fatalf("%d inotify descriptors open, want %d: a watch was not released", inotifyFDs(t), want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestFSWatchReleasesWatches(t *testing.T) {
	h := newHarness(t)
	base := inotifyFDs(t)

	s := openWatch(t, h, watchQuery("paths", t.TempDir(), "recursive", "true"), "")
	if n := inotifyFDs(t); n != base+1 {
		t.Errorf("%d inotify descriptors while watching, want %d", n, base+1)
	}
	s.cancel() // the caller goes away
	waitInotifyFDs(t, base)

	dir := t.TempDir()
	s = openWatch(t, h, watchQuery("paths", dir, "one_shot", "true"), "")
	must(t, os.WriteFile(filepath.Join(dir, "f"), nil, 0o644))
	s.waitEnd()
	waitInotifyFDs(t, base)

	resp, _ := watchRequest(t, h, watchQuery("paths", dir, "paths", dir+"/nope"), "")
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("watch of a missing path = %d, want 404", resp.StatusCode)
	}
	waitInotifyFDs(t, base)
}

func TestWatchLoopHeartbeat(t *testing.T) {
	dir := t.TempDir()
	run, err := startWatch(watchPlan{Ops: allWatchOps}, []string{dir}, testLogger(t))
	must(t, err)
	defer run.close()
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run.loop(ctx, sseSink{w: pw, flush: func() error { return nil }}, time.Millisecond)
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil || line != ": heartbeat\n" {
		t.Errorf("first line %q, %v; want the heartbeat comment", line, err)
	}
	cancel()
	go io.Copy(io.Discard, pr) // heartbeats written before the loop saw the cancel
	if err := <-done; err != nil {
		t.Errorf("loop after cancel = %v, want nil", err)
	}
}

func TestFSWatchSubdirectoryReportedOnce(t *testing.T) {
	h := newHarness(t)
	dir := t.TempDir()
	sub, file := filepath.Join(dir, "s"), filepath.Join(dir, "f")
	must(t, os.Mkdir(sub, 0o755))
	must(t, os.WriteFile(file, nil, 0o644))
	// No debounce, so nothing would hide a duplicate.
	s := openWatch(t, h, watchQuery("paths", dir, "recursive", "true", "debounce", "0s", "events", "chmod,rename"), "")
	must(t, os.Chmod(sub, 0o700))
	must(t, os.Chmod(sub, 0o750))
	must(t, os.Rename(sub, sub+"2"))
	must(t, os.Rename(file, file+"2")) // ends the sequence
	var got []string
	for len(got) == 0 || got[len(got)-1] != "rename f" {
		ev, err := s.next()
		if err != nil {
			t.Fatalf("after %q: %v", got, err)
		}
		got = append(got, ev.Type+" "+filepath.Base(ev.Path))
	}
	if want := "chmod s,chmod s,rename s,rename f"; strings.Join(got, ",") != want {
		t.Errorf("events %q, want %q", got, want)
	}
}
