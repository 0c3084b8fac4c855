package guest

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/openslicer/openslicer/api"
)

// bgRegistry holds the background execs of the agent: running ones and
// exited ones not yet deleted, with the ring bytes they hold, and the ids
// of deleted ones (so later calls on them read as gone). Its zero value is
// ready to use. It lives as long as the agent process.
type bgRegistry struct {
	mu          sync.Mutex
	execs       map[string]*bgExec
	reserved    int64           // ring bytes of the execs in execs
	reaped      map[string]bool // deleted ids, the newest maxReaped of them
	reapedOrder []string        // reaped's ids, oldest first
}

// reserve sets aside want ring bytes for an exec about to start; release
// gives them back if it does not.
func (g *bgRegistry) reserve(want int64) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if err := checkRingBudget(g.reserved, want, maxTotalRingBytes); err != nil {
		return err
	}
	g.reserved += want
	return nil
}

func (g *bgRegistry) release(n int64) {
	g.mu.Lock()
	g.reserved -= n
	g.mu.Unlock()
}

// add enters a started exec, whose ring bytes were reserved.
func (g *bgRegistry) add(e *bgExec) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.execs == nil {
		g.execs = map[string]*bgExec{}
	}
	g.execs[e.id] = e
}

// get finds an exec: api.ErrGone once deleted, api.ErrNotFound if unknown.
func (g *bgRegistry) get(id string) (*bgExec, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.lookup(id)
}

func (g *bgRegistry) lookup(id string) (*bgExec, error) {
	if e, ok := g.execs[id]; ok {
		return e, nil
	}
	if g.reaped[id] {
		return nil, fmt.Errorf("exec %q was deleted: %w", id, api.ErrGone)
	}
	return nil, fmt.Errorf("exec %q: %w", id, api.ErrNotFound)
}

// list returns the execs, oldest first.
func (g *bgRegistry) list() []*bgExec {
	g.mu.Lock()
	es := make([]*bgExec, 0, len(g.execs))
	for _, e := range g.execs {
		es = append(es, e)
	}
	g.mu.Unlock()
	slices.SortFunc(es, func(a, b *bgExec) int {
		return cmp.Or(a.proc.started.Compare(b.proc.started), cmp.Compare(a.id, b.id))
	})
	return es
}

// remove forgets an exec that has finished, frees its ring bytes and
// remembers its id as deleted. A running exec is api.ErrConflict.
func (g *bgRegistry) remove(id string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	e, err := g.lookup(id)
	if err != nil {
		return err
	}
	if !e.isFinished() {
		return fmt.Errorf("exec %q is still running; kill it first: %w", id, api.ErrConflict)
	}
	delete(g.execs, id)
	g.reserved -= e.ringBytes
	if g.reaped == nil {
		g.reaped = map[string]bool{}
	}
	g.reaped[id] = true
	g.reapedOrder = append(g.reapedOrder, id)
	if len(g.reapedOrder) > maxReaped {
		delete(g.reaped, g.reapedOrder[0])
		g.reapedOrder = slices.Delete(g.reapedOrder, 0, 1)
	}
	return nil
}

// bgExec is one background exec: its process and the log ring its output
// goes to. The ring and the finished flag are guarded by mu; every change
// closes the changed channel, which wakes the readers following the log.
type bgExec struct {
	id        string
	command   string
	args      []string
	sp        procSpec
	ringBytes int64
	proc      *process

	mu       sync.Mutex
	ring     *frameRing
	changed  chan struct{} // closed and replaced at every append
	finished bool          // the exit frame is in the ring
	done     chan struct{} // closed when finished is set
}

// newBgExec starts the log of a started process with its started frame.
func newBgExec(id string, req *api.ExecRequest, sp procSpec, ringBytes int64, p *process) *bgExec {
	e := &bgExec{
		id: id, command: req.Command, args: req.Args, sp: sp, ringBytes: ringBytes, proc: p,
		ring: newFrameRing(ringBytes), changed: make(chan struct{}), done: make(chan struct{}),
	}
	e.ring.append(api.FrameStarted, p.started, nil)
	return e
}

// collect logs the process's output until it is drained, then its exit:
// the exit frame is the last frame, and only then is the exec finished.
func (e *bgExec) collect(log *slog.Logger) {
	out := make(chan chunk, 16)
	go e.proc.pump(false, out)
	for c := range out {
		e.record(c.stream, time.Now().UTC(), c.data)
	}
	<-e.proc.exited
	e.mu.Lock()
	e.appendLocked(api.FrameExit, time.Now().UTC(), nil)
	e.finished = true
	close(e.done)
	e.mu.Unlock()
	log.Info("background exec exited", "exec_id", e.id, "pid", e.proc.pid,
		"exit_code", e.proc.status.Code, "signal", e.proc.status.Signal)
}

// record appends a frame and wakes the followers.
func (e *bgExec) record(kind string, at time.Time, data []byte) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.appendLocked(kind, at, data)
}

func (e *bgExec) appendLocked(kind string, at time.Time, data []byte) {
	e.ring.append(kind, at, data)
	close(e.changed)
	e.changed = make(chan struct{})
}

// isFinished reports whether the process has exited and its log is
// complete.
func (e *bgExec) isFinished() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.finished
}

// logRead is one read of the log: what a reader at a cursor has not seen,
// and how to wait for more.
type logRead struct {
	gap      ringGap
	entries  []ringEntry
	next     ringCursor
	meta     bgMeta          // for rendering the entries
	changed  <-chan struct{} // closed at the next append
	finished bool            // nothing will be appended any more
}

// read reads the log from c.
func (e *bgExec) read(c ringCursor) logRead {
	e.mu.Lock()
	defer e.mu.Unlock()
	gap, entries, next := e.ring.read(c)
	return logRead{gap: gap, entries: entries, next: next, meta: e.metaLocked(), changed: e.changed, finished: e.finished}
}

// metaLocked is what frames need to know about the process. The exit
// status is read only once the exec has finished, which is after it was
// set.
func (e *bgExec) metaLocked() bgMeta {
	m := bgMeta{pid: e.proc.pid, started: e.proc.started}
	if e.finished {
		m.status, m.ended = e.proc.status, e.proc.ended
	}
	return m
}

// info describes the exec.
func (e *bgExec) info() api.ExecBackgroundInfo {
	e.mu.Lock()
	defer e.mu.Unlock()
	in := api.ExecBackgroundInfo{
		ExecID: e.id, PID: e.proc.pid,
		Command: e.command, Args: e.args, Cwd: e.sp.Dir, UID: e.sp.UID,
		StartedAt: e.proc.started, Running: !e.finished,
		BytesWritten: e.ring.written, BytesDropped: e.ring.dropped,
		NextID: e.ring.nextID, RingBytes: e.ringBytes,
	}
	if m := e.metaLocked(); e.finished {
		in.ExitCode, in.Signal, in.EndedAt = &m.status.Code, m.status.Signal, &m.ended
	}
	return in
}

// signal sends sig to the exec's process group while its leader, the
// process started, has not exited, and reports whether it did. Once the
// leader is reaped its id may be reused by another process group, so
// nothing is sent then, even to descendants left in the old group.
func (e *bgExec) signal(sig unix.Signal) (bool, error) {
	select {
	case <-e.proc.exited:
		return false, nil
	default:
	}
	err := unix.Kill(-e.proc.pid, sig)
	switch {
	case errors.Is(err, unix.ESRCH):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("signal exec %q (process group %d): %w", e.id, e.proc.pid, err)
	}
	return true, nil
}

// escalate sends KILL to the process group after grace unless the process
// has exited by then.
func (e *bgExec) escalate(grace time.Duration) {
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-e.proc.exited:
	case <-t.C:
		_, _ = e.signal(unix.SIGKILL) // a no-op if it exits meanwhile
	}
}
