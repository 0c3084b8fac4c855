package guest

import (
	"context"
	"fmt"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestStatusOf(t *testing.T) {
	// A wait status holds the exit code in bits 8-15, or the signal in the
	// low 7 bits.
	tests := []struct {
		ws   syscall.WaitStatus
		want exitStatus
	}{
		{0, exitStatus{Code: 0}},
		{3 << 8, exitStatus{Code: 3}},
		{255 << 8, exitStatus{Code: 255}},
		{syscall.WaitStatus(unix.SIGKILL), exitStatus{Code: 137, Signal: "SIGKILL"}},
		{syscall.WaitStatus(unix.SIGTERM), exitStatus{Code: 143, Signal: "SIGTERM"}},
	}
	for _, tt := range tests {
		if got := statusOf(tt.ws); got != tt.want {
			t.Errorf("statusOf(%#x) = %+v, want %+v", uint32(tt.ws), got, tt.want)
		}
	}
}

// TestReaper starts commands through a running reaper, which reaps with
// wait4(-1) as PID 1 does, and checks that each status reaches its waiter
// and that children nobody waits for are reaped too.
func TestReaper(t *testing.T) {
	r := NewReaper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	for _, code := range []int{0, 3, 42} {
		wait, err := r.start(exec.Command("/bin/sh", "-c", fmt.Sprintf("exit %d", code)))
		if err != nil {
			t.Fatalf("start: %v", err)
		}
		if got := statusOf(wait()); got.Code != code {
			t.Errorf("exit %d: status %+v", code, got)
		}
	}

	// A child started behind the reaper's back (like an orphan handed to
	// init) is reaped and leaves no zombie.
	stray := exec.Command("/bin/true")
	if err := stray.Start(); err != nil {
		t.Fatal(err)
	}
	if !r.WaitChildren(30 * time.Second) {
		t.Errorf("children left after WaitChildren")
	}
	if !processDead(stray.Process.Pid) {
		t.Errorf("stray child %d still there", stray.Process.Pid)
	}
	var ws unix.WaitStatus
	if _, err := unix.Wait4(stray.Process.Pid, &ws, unix.WNOHANG, nil); err != unix.ECHILD {
		t.Errorf("wait4(stray) = %v, want ECHILD: the reaper collected it", err)
	}
}
