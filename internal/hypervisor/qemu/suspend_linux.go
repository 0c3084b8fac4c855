package qemu

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/hypervisor"
)

const (
	// pollInterval spaces query-migrate and query-status polls.
	pollInterval = 10 * time.Millisecond
	// cleanupTimeout bounds undoing a failed save and killing a machine
	// whose save completed but which did not quit, both of which run even
	// when the caller's context has ended.
	cleanupTimeout = 10 * time.Second
	// exitGrace is how long a QMP error during restore waits to learn
	// whether it was QEMU exiting.
	exitGrace = time.Second
	// agentDetachTimeout bounds the wait for the guest agent to close its
	// channel before a save (see detachAgent); it usually takes tens of
	// milliseconds.
	agentDetachTimeout = 5 * time.Second
)

// Suspend implements hypervisor.Machine (see suspend.go for how).
func (m *machine) Suspend(ctx context.Context, stateDir string) error {
	if err := m.suspend(ctx, stateDir); err != nil {
		return fmt.Errorf("suspend qemu pid %d to %s: %w", m.handle.PID, stateDir, err)
	}
	return nil
}

func (m *machine) suspend(ctx context.Context, stateDir string) error {
	if !filepath.IsAbs(stateDir) {
		return fmt.Errorf("%w: state directory path is not absolute", api.ErrInvalid)
	}
	if m.exited() {
		return errExited
	}
	m.qmpMu.Lock()
	defer m.qmpMu.Unlock()
	shape, err := m.shape(ctx)
	if err != nil {
		return err
	}
	saved := false
	defer func() {
		if !saved {
			m.setSuspending(false)
		}
	}()
	begin := time.Now()
	status, err := m.prepareSave(ctx)
	if err != nil {
		return err
	}
	detached := time.Since(begin)

	w, err := hypervisor.CreateState(stateDir)
	if err != nil {
		return err
	}
	begin = time.Now()
	saveTook := time.Duration(0)
	err = m.saveTo(ctx, w.Path(migrationFile), false)
	if err == nil {
		saveTook = time.Since(begin)
		err = w.Commit(hypervisor.Manifest{
			Backend: backendName, Format: stateFormat, Machine: shape,
			Files: []hypervisor.StateFile{{Name: migrationFile, Holds: []string{hypervisor.HoldsMemory, hypervisor.HoldsDevices}}},
		})
	}
	if err != nil {
		w.Abort()
		m.undoSave(ctx, status == stateRunning)
		return err
	}
	saved = true
	m.log.Info("machine state saved", "state_dir", stateDir, "detach_agent", detached.Round(time.Millisecond),
		"save", saveTook.Round(time.Millisecond), "sync", (time.Since(begin) - saveTook).Round(time.Millisecond))
	return m.exitAfterSave(ctx)
}

// saveTo has QEMU write the machine's state to a new file at path
// (without shared RAM when sharedRAM; see save).
func (m *machine) saveTo(ctx context.Context, path string, sharedRAM bool) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create state file: %w", err)
	}
	defer f.Close()
	if err := m.session(ctx, func(q *QMP) error { return save(ctx, q, f, sharedRAM) }); err != nil {
		return err
	}
	return f.Close()
}

// session runs fn in a QMP session of its own. QEMU serves one QMP client
// at a time, so sessions follow one another; the caller holds qmpMu.
func (m *machine) session(ctx context.Context, fn func(q *QMP) error) error {
	q, err := DialQMP(ctx, filepath.Join(m.handle.RunDir, qmpSocket))
	if err != nil {
		return err
	}
	defer q.Close()
	return fn(q)
}

// detachAgent closes the agent connections DialAgent handed out, and
// refuses new ones until the suspend is over. If the guest had its end of
// the port open and can run, it then waits (at most agentDetachTimeout)
// until the guest has closed it, which the agent does when it sees the
// host go away, or at once when the host released it first
// (agent.Client.Release, which the caller sends before a save). Saved
// after that, the guest is waiting for a host rather than inside a yamux
// session with one that no longer exists.
//
// The wait looks at the port's state (query-chardev) every
// detachPollInterval, and at QEMU's VSERPORT_CHANGE events. The state
// alone can miss a close: an agent that noticed the host leave opens the
// port again at once. The event alone is late: QEMU sends it at most once
// a second per port, so a close less than a second after the guest
// opened the port (just after a boot or a restore) was reported up to a
// second late, merged with the reopen. A released agent keeps the port
// closed for agent.ReleaseQuiet, long enough for the state to show it.
//
// Without this, the restored guest learns of the old host's departure
// (QEMU tells it once its vCPUs run) at about the time the next host
// connects, and the two notices can merge into none: the agent then keeps
// serving its old session to the new host's new one, which mostly works,
// by accident. A paused machine cannot react before its save; it gets
// that behaviour.
func (m *machine) detachAgent(ctx context.Context, q *QMP, running bool) {
	m.agentMu.Lock()
	m.suspending = true
	conns := m.agentConns
	m.agentConns = map[*agentConn]struct{}{}
	m.agentMu.Unlock()
	if len(conns) == 0 {
		return
	}
	guestOpen, err := m.agentPortState(ctx, q)
	if err != nil {
		m.log.Warn("query agent channel", "err", err)
	}
	for c := range conns {
		c.Conn.Close()
	}
	if !guestOpen || !running {
		return
	}
	wctx, cancel := context.WithTimeout(ctx, agentDetachTimeout)
	defer cancel()
	isAgentPort := func(data json.RawMessage) bool {
		var ev struct {
			ID string `json:"id"`
		}
		return json.Unmarshal(data, &ev) == nil && ev.ID == agentPortID
	}
	for {
		open, err := m.agentPortState(wctx, q)
		if _, changed := q.TakeEvent("VSERPORT_CHANGE", isAgentPort); err == nil && (!open || changed) {
			return
		}
		if err == nil {
			err = sleep(wctx, detachPollInterval)
		}
		if err != nil {
			if ctx.Err() == nil {
				m.log.Warn("guest agent did not close its channel before the save; after restore it may keep its old session", "err", err)
			}
			return
		}
	}
}

// detachPollInterval spaces detachAgent's looks at the agent port.
const detachPollInterval = 5 * time.Millisecond

// agentPortState reports whether the guest has the agent port open.
func (m *machine) agentPortState(ctx context.Context, q *QMP) (bool, error) {
	ret, err := q.Execute(ctx, "query-chardev", nil)
	if err != nil {
		return false, err
	}
	return agentPortOpen(ret)
}

func (m *machine) setSuspending(v bool) {
	m.agentMu.Lock()
	m.suspending = v
	m.agentMu.Unlock()
}

// setIgnoreShared sets the migration capability x-ignore-shared, which
// keeps shared RAM (a memory file mapped shared) out of a save, and has
// a load expect none. It is set for a capture of such a machine and for
// the load of one, and cleared for every other save: a process keeps its
// capabilities, and a clone that a load left with it set must not write
// a suspend that a plain load cannot read.
func setIgnoreShared(ctx context.Context, q *QMP, on bool) error {
	_, err := q.Execute(ctx, "migrate-set-capabilities", map[string]any{
		"capabilities": []map[string]any{{"capability": ignoreShared, "state": on}},
	})
	return err
}

// save stops the vCPUs and has QEMU write the machine's state to f:
// memory included, unless sharedRAM (a capture of a machine with a
// memory file, whose file is its memory).
func save(ctx context.Context, q *QMP, f *os.File, sharedRAM bool) error {
	if _, err := q.Execute(ctx, "stop", nil); err != nil {
		return err
	}
	if err := setIgnoreShared(ctx, q, sharedRAM); err != nil {
		return err
	}
	if _, err := q.Execute(ctx, "migrate-set-parameters", map[string]any{"max-bandwidth": saveBandwidth}); err != nil {
		return err
	}
	if _, err := q.ExecuteFD(ctx, "getfd", map[string]string{"fdname": stateFDName}, int(f.Fd())); err != nil {
		return err
	}
	if _, err := q.Execute(ctx, "migrate", map[string]string{"uri": "fd:" + stateFDName}); err != nil {
		return err
	}
	for {
		ret, err := q.Execute(ctx, "query-migrate", nil)
		if err != nil {
			return err
		}
		var st migrationStatus
		if err := json.Unmarshal(ret, &st); err != nil {
			return fmt.Errorf("decode query-migrate answer %s: %w", ret, err)
		}
		done, err := saveDone(st)
		if err != nil || done {
			return err
		}
		if err := sleep(ctx, pollInterval); err != nil {
			return err
		}
	}
}

// undoSave puts a machine whose save failed back as it was: the migration
// cancelled, the descriptor dropped, the vCPUs running again if they were.
// It runs even when ctx has ended. Failures are logged: the save's own
// error is the one the caller needs.
func (m *machine) undoSave(ctx context.Context, wasRunning bool) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	err := m.session(ctx, func(q *QMP) error {
		if _, err := q.Execute(ctx, "migrate_cancel", nil); err != nil {
			return err
		}
		// Fails harmlessly when migrate consumed the descriptor.
		q.Execute(ctx, "closefd", map[string]string{"fdname": stateFDName})
		// cont is refused while the migration is still being cancelled.
		for {
			ret, err := q.Execute(ctx, "query-migrate", nil)
			if err != nil {
				return err
			}
			var st migrationStatus
			if json.Unmarshal(ret, &st) == nil && !migrating(st.Status) {
				break
			}
			if err := sleep(ctx, pollInterval); err != nil {
				return fmt.Errorf("migration still not cancelled: %w", err)
			}
		}
		if !wasRunning {
			return nil
		}
		_, err := q.Execute(ctx, "cont", nil)
		return err
	})
	if err != nil {
		m.log.Warn("undo failed save", "err", err)
		return
	}
	m.log.Info("save failed; machine left as it was")
}

// exitAfterSave ends the process once its state is saved: quit, and
// SIGKILL if it has not exited when ctx ends (or soon, if quit failed).
// Nothing is lost by the kill: the state is on disk, and QEMU flushed the
// disks when the save completed.
func (m *machine) exitAfterSave(ctx context.Context) error {
	err := m.session(ctx, func(q *QMP) error {
		_, err := q.Execute(ctx, "quit", nil)
		return err
	})
	var grace <-chan time.Time // nil: wait for ctx
	if err != nil {
		// QEMU may close the socket before its answer is read.
		m.log.Debug("qmp quit", "err", err)
		grace = time.After(exitGrace)
	}
	select {
	case <-m.done:
		return nil
	case <-ctx.Done():
	case <-grace:
	}
	kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	return m.Kill(kctx)
}

// awaitRestore hands QEMU (started with -incoming defer) the migration
// stream of l as a descriptor, waits until it has loaded it, then resumes
// the guest. A stream beside a memory file is loaded with x-ignore-shared
// set: it holds no RAM.
func (m *machine) awaitRestore(ctx context.Context, l load) error {
	f, err := os.Open(l.stream)
	if err != nil {
		return fmt.Errorf("open state: %w", err)
	}
	defer f.Close()
	m.qmpMu.Lock()
	defer m.qmpMu.Unlock()
	err = m.session(ctx, func(q *QMP) error {
		if l.memory != "" {
			if err := setIgnoreShared(ctx, q, true); err != nil {
				return err
			}
		}
		if _, err := q.ExecuteFD(ctx, "getfd", map[string]string{"fdname": stateFDName}, int(f.Fd())); err != nil {
			return err
		}
		if _, err := q.Execute(ctx, "migrate-incoming", map[string]string{"uri": "fd:" + stateFDName}); err != nil {
			return err
		}
		for {
			status, err := runState(ctx, q)
			if err != nil {
				return err
			}
			action, err := restoreStep(status)
			switch {
			case err != nil:
				return err
			case action == restoreDone:
				return nil
			case action == restoreResume:
				if _, err := q.Execute(ctx, "cont", nil); err != nil {
					return err
				}
				continue
			}
			if err := sleep(ctx, pollInterval); err != nil {
				return err
			}
		}
	})
	if err != nil && ctx.Err() == nil {
		return m.restoreError(err)
	}
	return err
}

// restoreError explains an error during restore: QEMU exits when it
// cannot load the migration stream, and says why on a stderr that
// daemonizing sent to /dev/null.
func (m *machine) restoreError(err error) error {
	select {
	case <-m.done:
		return fmt.Errorf("qemu exited while loading the saved state: it is damaged, or from a machine of another spec (%w)", err)
	case <-time.After(exitGrace):
		return err
	}
}

// runState returns QEMU's run state (query-status).
func runState(ctx context.Context, q *QMP) (string, error) {
	ret, err := q.Execute(ctx, "query-status", nil)
	if err != nil {
		return "", err
	}
	var st struct {
		Status string `json:"status"`
	}
	if err := json.Unmarshal(ret, &st); err != nil {
		return "", fmt.Errorf("decode query-status answer %s: %w", ret, err)
	}
	return st.Status, nil
}

// sleep waits for d, or returns ctx's error when it ends first.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// prepareSave is what a save (suspend or capture) does first, with qmpMu
// held: the machine's run state, refused when it cannot be saved
// (canSuspend), and the guest agent let go of its host (detachAgent)
// when the guest runs.
func (m *machine) prepareSave(ctx context.Context) (status string, err error) {
	err = m.session(ctx, func(q *QMP) error {
		var err error
		if status, err = runState(ctx, q); err == nil {
			err = canSuspend(status)
		}
		if err != nil {
			return err
		}
		m.detachAgent(ctx, q, status == stateRunning)
		return ctx.Err()
	})
	return status, err
}
