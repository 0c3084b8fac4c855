package guest

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Reaper collects the exit status of every child of PID 1: the commands it
// started and the orphans the kernel hands to init. wait4(-1) would steal
// the statuses exec.Cmd.Wait expects, so while a reaper runs, processes
// must be started through it (it is a starter); their statuses go to their
// waiters, and other children are simply reaped.
type Reaper struct {
	mu      sync.Mutex
	waiting map[int]chan syscall.WaitStatus
}

// NewReaper returns a reaper; Run starts its work.
func NewReaper() *Reaper {
	return &Reaper{waiting: map[int]chan syscall.WaitStatus{}}
}

// start starts cmd. The lock is held across Start, so that a child which
// exits at once is registered before reap can look it up.
func (r *Reaper) start(cmd *exec.Cmd) (func() syscall.WaitStatus, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	ch := make(chan syscall.WaitStatus, 1)
	r.waiting[cmd.Process.Pid] = ch
	return func() syscall.WaitStatus {
		ws := <-ch
		_ = cmd.Process.Release() // reaped already; frees its pidfd
		return ws
	}, nil
}

// Run reaps children each time SIGCHLD arrives, until ctx ends.
func (r *Reaper) Run(ctx context.Context) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, unix.SIGCHLD)
	defer signal.Stop(sigs)
	r.reap()
	for {
		select {
		case <-ctx.Done():
			return
		case <-sigs:
			r.reap()
		}
	}
}

// reap collects every child that has exited and hands the statuses of
// started commands to their waiters. It reports whether no children are
// left at all.
func (r *Reaper) reap() (none bool) {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.ECHILD):
			return true
		case err != nil || pid <= 0:
			return false
		}
		r.mu.Lock()
		ch, ok := r.waiting[pid]
		delete(r.waiting, pid)
		r.mu.Unlock()
		if ok {
			ch <- syscall.WaitStatus(ws)
		}
	}
}

// WaitChildren reaps until no children are left or timeout has passed, and
// reports whether none are left.
func (r *Reaper) WaitChildren(timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		if r.reap() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}
