package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/hypervisor"
)

// errExited is returned by operations on a machine whose process is gone.
var errExited = fmt.Errorf("qemu process has exited: %w", api.ErrConflict)

// errSuspending is returned by DialAgent while the machine is suspending.
var errSuspending = fmt.Errorf("machine is being suspended: %w", api.ErrConflict)

// start launches qemu for runDir and adopts the daemonized process; when
// l names a stream, QEMU waits for it (-incoming defer), and start hands
// it over, waits for the load and resumes the guest. Whatever fails after
// qemu may exist kills every qemu of runDir.
func (b *Backend) start(ctx context.Context, runDir string, args []string, l load) (hypervisor.Machine, error) {
	if err := os.MkdirAll(runDir, 0o700); err != nil {
		return nil, fmt.Errorf("create run dir: %w", err)
	}
	if pids := processesIn(runDir); len(pids) > 0 {
		return nil, fmt.Errorf("%w: qemu pid %d already runs in %s", api.ErrConflict, pids[0], runDir)
	}
	if err := removeRunFiles(runDir); err != nil {
		return nil, fmt.Errorf("remove stale sockets: %w", err)
	}
	fail := func(err error) (hypervisor.Machine, error) {
		if kerr := killStrays(runDir); kerr != nil {
			b.log().Warn("clean up failed qemu start", "run_dir", runDir, "err", kerr)
		}
		return nil, err
	}
	begin := time.Now()
	if err := launch(ctx, b.Binary, args, runDir); err != nil {
		return fail(err)
	}
	launched := time.Since(begin)
	pid, err := readPidfile(filepath.Join(runDir, pidFile))
	if err != nil {
		return fail(err)
	}
	fd, err := openProcess(pid, runDir)
	if err != nil {
		return fail(fmt.Errorf("qemu exited right after start-up (see the console log): %w", err))
	}
	h := hypervisor.Handle{Backend: b.Name(), PID: pid, RunDir: runDir}
	m := newMachine(h, fd, args, b.log())
	if l.stream != "" {
		begin = time.Now()
		if err := m.awaitRestore(ctx, l); err != nil {
			return fail(fmt.Errorf("restore: %w", err))
		}
		m.log.Debug("machine restored", "launch", launched.Round(time.Millisecond), "load", time.Since(begin).Round(time.Millisecond),
			"memory_file", l.memory != "")
	}
	return m, nil
}

// attach adopts the running qemu of h.
func (b *Backend) attach(ctx context.Context, h hypervisor.Handle) (hypervisor.Machine, error) {
	pid := h.PID
	if pid == 0 {
		var err error
		if pid, err = readPidfile(filepath.Join(h.RunDir, pidFile)); err != nil {
			return nil, err
		}
	}
	fd, args, err := openProcessArgs(pid, h.RunDir)
	if err != nil {
		return nil, err
	}
	h = hypervisor.Handle{Backend: b.Name(), PID: pid, RunDir: h.RunDir}
	return newMachine(h, fd, args, b.log()), nil
}

// machine is one adopted qemu process.
type machine struct {
	handle hypervisor.Handle
	// args is the process's command line, as Args built it: Suspend
	// reads the machine's shape from it (shapeFromArgs).
	args []string
	log  *slog.Logger
	done chan struct{}

	fdMu  sync.Mutex
	pidfd int // -1 once the process has exited

	qmpMu sync.Mutex // one QMP session at a time

	agentMu    sync.Mutex
	agentConns map[*agentConn]struct{} // handed out by DialAgent, not closed
	suspending bool                    // DialAgent refuses while set
}

var _ hypervisor.Machine = (*machine)(nil)

// newMachine takes ownership of pidfd and watches it.
func newMachine(h hypervisor.Handle, pidfd int, args []string, log *slog.Logger) *machine {
	m := &machine{
		handle: h,
		args:   args,
		log:    log.With("qemu_pid", h.PID, "run_dir", h.RunDir),
		done:   make(chan struct{}),
		pidfd:  pidfd,

		agentConns: map[*agentConn]struct{}{},
	}
	go m.watch()
	return m
}

// watch waits for the process to exit, then removes its sockets and
// pidfile, closes the pidfd and closes done, in that order: once Done is
// closed the run directory holds no stale sockets. qemu is not our child
// (it daemonized), so it cannot be waited for; its pidfd becomes readable
// when it exits. This goroutine alone closes the pidfd.
func (m *machine) watch() {
	for {
		err := waitExit(m.pidfd, -1)
		if err == nil {
			break
		}
		m.log.Warn("watch qemu process", "err", err)
		time.Sleep(time.Second)
	}
	if err := removeRunFiles(m.handle.RunDir); err != nil {
		m.log.Warn("remove qemu sockets", "err", err)
	}
	m.fdMu.Lock()
	unix.Close(m.pidfd)
	m.pidfd = -1
	m.fdMu.Unlock()
	close(m.done)
}

// Handle implements hypervisor.Machine.
func (m *machine) Handle() hypervisor.Handle { return m.handle }

// Done implements hypervisor.Machine.
func (m *machine) Done() <-chan struct{} { return m.done }

// DialAgent implements hypervisor.Machine. The socket takes one connection
// at a time: a second dial waits until the first is closed. Suspend closes
// the connections handed out (see detachAgent), and DialAgent refuses
// while a Suspend runs.
func (m *machine) DialAgent(ctx context.Context) (net.Conn, error) {
	if m.exited() {
		return nil, fmt.Errorf("dial agent: %w", errExited)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", filepath.Join(m.handle.RunDir, agentSocket))
	if err != nil {
		return nil, fmt.Errorf("dial agent: %w", err)
	}
	m.agentMu.Lock()
	defer m.agentMu.Unlock()
	if m.suspending {
		conn.Close()
		return nil, fmt.Errorf("dial agent: %w", errSuspending)
	}
	c := &agentConn{Conn: conn, m: m}
	m.agentConns[c] = struct{}{}
	return c, nil
}

// agentConn is a connection handed out by DialAgent, tracked until closed.
type agentConn struct {
	net.Conn
	m    *machine
	once sync.Once
}

func (c *agentConn) Close() error {
	c.once.Do(func() {
		c.m.agentMu.Lock()
		delete(c.m.agentConns, c)
		c.m.agentMu.Unlock()
	})
	return c.Conn.Close()
}

// Kill implements hypervisor.Machine: SIGKILL through the pidfd, then wait
// for the watcher to see the exit and clean up. Killing a machine that has
// already exited is not an error.
func (m *machine) Kill(ctx context.Context) error {
	m.fdMu.Lock()
	var err error
	if m.pidfd >= 0 {
		err = unix.PidfdSendSignal(m.pidfd, unix.SIGKILL, nil, 0)
	}
	m.fdMu.Unlock()
	if err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("kill qemu pid %d: %w", m.handle.PID, err)
	}
	select {
	case <-m.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("kill qemu pid %d: wait for exit: %w", m.handle.PID, ctx.Err())
	}
}

// Shutdown implements hypervisor.Machine: an ACPI power-button press.
func (m *machine) Shutdown(ctx context.Context) error {
	return m.command(ctx, "system_powerdown")
}

// Pause implements hypervisor.Machine.
func (m *machine) Pause(ctx context.Context) error { return m.command(ctx, "stop") }

// Resume implements hypervisor.Machine.
// A save a daemon left under way when it died (a capture cut short) is
// cancelled first: QEMU stops the vCPUs again when a migration completes,
// which would undo the cont.
func (m *machine) Resume(ctx context.Context) error {
	if m.exited() {
		return fmt.Errorf("qmp cont: %w", errExited)
	}
	m.qmpMu.Lock()
	defer m.qmpMu.Unlock()
	return m.session(ctx, func(q *QMP) error {
		for cancelled := false; ; {
			ret, err := q.Execute(ctx, "query-migrate", nil)
			if err != nil {
				return err
			}
			var st migrationStatus
			if json.Unmarshal(ret, &st) == nil && !migrating(st.Status) {
				break
			}
			if !cancelled {
				m.log.Warn("cancelling a save left under way before resuming", "status", st.Status)
				if _, err := q.Execute(ctx, "migrate_cancel", nil); err != nil {
					return err
				}
				cancelled = true
			}
			if err := sleep(ctx, pollInterval); err != nil {
				return fmt.Errorf("migration still not cancelled: %w", err)
			}
		}
		_, err := q.Execute(ctx, "cont", nil)
		return err
	})
}

// command runs one argument-less QMP command in a session of its own. A
// session per command keeps nothing to repair after a daemon restart or a
// dropped connection; it costs a connect and a handshake.
func (m *machine) command(ctx context.Context, cmd string) error {
	if m.exited() {
		return fmt.Errorf("qmp %s: %w", cmd, errExited)
	}
	m.qmpMu.Lock()
	defer m.qmpMu.Unlock()
	q, err := DialQMP(ctx, filepath.Join(m.handle.RunDir, qmpSocket))
	if err != nil {
		return err
	}
	defer q.Close()
	if _, err := q.Execute(ctx, cmd, nil); err != nil {
		return err
	}
	return nil
}

func (m *machine) exited() bool {
	select {
	case <-m.done:
		return true
	default:
		return false
	}
}
