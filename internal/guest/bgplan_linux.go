package guest

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/openslicer/openslicer/api"
)

// Background exec limits and defaults (spec §3.7).
const (
	// defaultRingBytes is the log ring of a launch that names no ring_bytes.
	defaultRingBytes = 1 << 20
	// maxTotalRingBytes bounds the rings of all execs not yet deleted
	// together; a launch that would go over it is refused (503).
	maxTotalRingBytes = 256 << 20
	// defaultKillGrace is how long TERM is given before KILL follows.
	defaultKillGrace = 5 * time.Second
	// defaultWaitExit and maxWaitExit bound wait-exit's timeout.
	defaultWaitExit = 30 * time.Second
	maxWaitExit     = 600 * time.Second
	// maxReaped is how many deleted exec ids are remembered (to answer 410
	// Gone); older ones are forgotten and read as unknown (404).
	maxReaped = 4096
)

// checkBackground refuses what a background launch cannot do and returns
// its ring size. Errors wrap api.ErrInvalid.
func checkBackground(req *api.ExecRequest) (ringBytes int64, err error) {
	switch {
	case req.Stdin:
		return 0, fmt.Errorf("%w: stdin=true cannot be used with background=true", api.ErrInvalid)
	case req.Buffered:
		return 0, fmt.Errorf("%w: buffered=true cannot be used with background=true", api.ErrInvalid)
	case req.RingBytes == 0:
		return defaultRingBytes, nil
	}
	return req.RingBytes, nil
}

// checkRingBudget refuses a ring of want bytes when reserved bytes are
// already held by other execs and together they would go over limit.
// Errors wrap api.ErrUnavailable.
func checkRingBudget(reserved, want, limit int64) error {
	if want > limit-reserved {
		return fmt.Errorf("%w: ring_bytes %d: background execs hold %d of the agent's %d ring bytes; delete finished execs to free them",
			api.ErrUnavailable, want, reserved, limit)
	}
	return nil
}

// newExecID returns a fresh exec id: "ex_" and 24 random hex digits.
func newExecID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return "ex_" + hex.EncodeToString(b)
}

// killSignals are the signals kill accepts, by name without "SIG".
var killSignals = map[string]unix.Signal{
	"TERM": unix.SIGTERM,
	"KILL": unix.SIGKILL,
	"INT":  unix.SIGINT,
	"HUP":  unix.SIGHUP,
	"QUIT": unix.SIGQUIT,
	"USR1": unix.SIGUSR1,
	"USR2": unix.SIGUSR2,
}

// killPlan is what a kill does: send sig (named name), and if it is TERM,
// send KILL after grace unless the process has exited by then.
type killPlan struct {
	sig      unix.Signal
	name     string // "TERM"
	escalate bool
	grace    time.Duration
}

// planKill works out a kill request: the signal (TERM when empty; named
// with or without "SIG", in any case) and the grace before KILL follows
// TERM (GraceMs, default 5000). Errors wrap api.ErrInvalid.
func planKill(req api.ExecKillRequest) (killPlan, error) {
	name := strings.TrimPrefix(strings.ToUpper(strings.TrimSpace(req.Signal)), "SIG")
	if name == "" {
		name = "TERM"
	}
	sig, ok := killSignals[name]
	if !ok {
		return killPlan{}, fmt.Errorf("%w: signal %q: want TERM, KILL, INT, HUP, QUIT, USR1 or USR2", api.ErrInvalid, req.Signal)
	}
	if req.GraceMs < 0 {
		return killPlan{}, fmt.Errorf("%w: grace_ms %d is negative", api.ErrInvalid, req.GraceMs)
	}
	p := killPlan{sig: sig, name: name, escalate: sig == unix.SIGTERM, grace: defaultKillGrace}
	if req.GraceMs > 0 {
		p.grace = time.Duration(req.GraceMs) * time.Millisecond
	}
	return p, nil
}

// parseWaitTimeout reads wait-exit's timeout: whole seconds, 30 when
// absent, 0 to answer at once; more than 600 is cut to 600. Errors wrap
// api.ErrInvalid.
func parseWaitTimeout(v string) (time.Duration, error) {
	if v == "" {
		return defaultWaitExit, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%w: timeout %q: want a whole number of seconds", api.ErrInvalid, v)
	}
	return time.Duration(min(n, int64(maxWaitExit/time.Second))) * time.Second, nil
}

// logsQuery is what GET …/logs asks for.
type logsQuery struct {
	follow bool
	fromID uint64 // 0 and 1 both mean the first frame
}

// parseLogsQuery reads follow and from_id. Errors wrap api.ErrInvalid.
func parseLogsQuery(q url.Values) (logsQuery, error) {
	var lq logsQuery
	if v := q.Get("follow"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return logsQuery{}, fmt.Errorf("%w: follow %q is not a boolean", api.ErrInvalid, v)
		}
		lq.follow = b
	}
	if v := q.Get("from_id"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return logsQuery{}, fmt.Errorf("%w: from_id %q is not a non-negative integer", api.ErrInvalid, v)
		}
		lq.fromID = n
	}
	return lq, nil
}

// bgMeta is what frames need to know about their process.
type bgMeta struct {
	pid     int
	started time.Time
	status  exitStatus // set once the process has exited
	ended   time.Time
}

// logFrame renders a frame of the ring as the logs stream carries it:
// with its id, and output as base64 in data.
func logFrame(e ringEntry, m bgMeta) api.ExecFrame {
	f := api.ExecFrame{ID: e.id, Timestamp: e.at, Type: e.kind}
	switch e.kind {
	case api.FrameStarted:
		f.Pid, f.StartedAt = m.pid, m.started
	case api.FrameExit:
		f.ExitCode, f.Signal, f.EndedAt = m.status.Code, m.status.Signal, m.ended
	default:
		f.Encoding = api.StdioBase64
		f.Data = base64.StdEncoding.EncodeToString(e.data)
	}
	return f
}

// gapFrame says which frames a reader missed. It carries the id of the
// last frame it stands for, so ids stay increasing and a reader resuming
// after it does not meet the same gap again.
func gapFrame(g ringGap, at time.Time) api.ExecFrame {
	bytes := fmt.Sprintf("%d bytes", g.bytes)
	if !g.exact {
		bytes = fmt.Sprintf("at most %d bytes", g.bytes)
	}
	return api.ExecFrame{
		ID: g.lastID, Timestamp: at, Type: api.FrameGap,
		DroppedBytes: g.bytes, DroppedFrames: int(g.frames),
		Message: fmt.Sprintf("%d frames (%s of output) were dropped from the log ring before they were read", g.frames, bytes),
	}
}
