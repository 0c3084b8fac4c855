package qemu

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/openslicer/openslicer/api"
)

// maxStartupOutput bounds how much of qemu's start-up output is quoted in
// an error.
const maxStartupOutput = 4096

// launch runs qemu with -daemonize and waits for the launching process to
// exit, which it does once the daemonized machine is set up (exit 0) or
// has failed (exit 1, with the reason on stderr). The launcher gets its own
// session so signals meant for the daemon's process group never reach it.
//
// Its output goes to an unlinked file rather than a pipe: the daemonized
// process inherits the descriptor, and a pipe would keep Wait waiting.
func launch(ctx context.Context, binary string, args []string, runDir string) error {
	out, err := os.CreateTemp(runDir, "qemu-start-*")
	if err != nil {
		return fmt.Errorf("create start-up log: %w", err)
	}
	os.Remove(out.Name())
	defer out.Close()

	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	runErr := cmd.Run()
	if runErr == nil {
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("run %s: %w", binary, ctx.Err())
	}
	msg := startupOutput(out)
	if msg == "" {
		return fmt.Errorf("run %s: %w", binary, runErr)
	}
	return fmt.Errorf("run %s: %s (%w)", binary, msg, runErr)
}

// startupOutput returns what qemu printed, trimmed and bounded.
func startupOutput(f *os.File) string {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return ""
	}
	b, _ := io.ReadAll(io.LimitReader(f, maxStartupOutput))
	return strings.TrimSpace(string(b))
}

// readPidfile returns the pid QEMU wrote; a missing file wraps
// api.ErrNotFound.
func readPidfile(path string) (int, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, fmt.Errorf("no pidfile %s: %w", path, api.ErrNotFound)
	}
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("pidfile %s holds %q, not a pid", path, b)
	}
	return pid, nil
}

// openProcess returns a pidfd for pid after checking that pid is the qemu
// of runDir. The command line is read after the pidfd is opened, and the
// pidfd is then checked to be still running: so the command line read is
// that of the process the pidfd refers to, even if the pid is reused.
// A process that is gone or is not ours wraps api.ErrNotFound.
func openProcess(pid int, runDir string) (int, error) {
	fd, _, err := openProcessArgs(pid, runDir)
	return fd, err
}

// openProcessArgs is openProcess, also returning the process's arguments
// (the binary first).
func openProcessArgs(pid int, runDir string) (int, []string, error) {
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return -1, nil, fmt.Errorf("qemu pid %d has exited: %w", pid, api.ErrNotFound)
	}
	if err != nil {
		return -1, nil, fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !ownsCmdline(cmdline, runDir) || exited(fd) {
		unix.Close(fd)
		return -1, nil, fmt.Errorf("pid %d is not a running qemu for %s: %w", pid, runDir, api.ErrNotFound)
	}
	return fd, strings.Split(strings.TrimSuffix(string(cmdline), "\x00"), "\x00"), nil
}

// exited reports whether the process behind pidfd has exited, without
// waiting.
func exited(pidfd int) bool {
	fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, 0)
	return err == nil && n > 0
}

// waitExit blocks until the process behind pidfd has exited. Only EINTR
// is retried; any other poll error is returned.
func waitExit(pidfd int, timeout time.Duration) error {
	ms := -1
	if timeout >= 0 {
		ms = int(timeout.Milliseconds())
	}
	fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, ms)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return fmt.Errorf("poll pidfd: %w", err)
		case n == 0:
			return fmt.Errorf("process still running after %s", timeout)
		}
		return nil
	}
}

// processesIn returns the pids of qemu processes running for runDir,
// found by scanning /proc. It finds what a pidfile cannot: a process from
// a start that failed or was cancelled half-way.
func processesIn(runDir string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && ownsCmdline(cmdline, runDir) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// killStrays kills every qemu process of runDir and waits for each to
// exit, then removes the files they leave behind. It is the cleanup of a
// failed start.
func killStrays(runDir string) error {
	var errs []error
	for _, pid := range processesIn(runDir) {
		fd, err := openProcess(pid, runDir)
		if err != nil {
			continue // exited meanwhile
		}
		err = unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
		if err == nil {
			err = waitExit(fd, 10*time.Second)
		}
		unix.Close(fd)
		if err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("kill qemu pid %d: %w", pid, err))
		}
	}
	errs = append(errs, removeRunFiles(runDir))
	return errors.Join(errs...)
}

// reclaim kills every qemu process of runDir until none is left.
func reclaim(ctx context.Context, runDir string) error {
	for range 10 {
		if len(processesIn(runDir)) == 0 {
			return nil
		}
		if err := killStrays(runDir); err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	return errors.New("still running after 10 rounds of kills")
}

// removeRunFiles removes the sockets and pidfile of a machine that is not
// running. The run directory and console log stay.
func removeRunFiles(runDir string) error {
	var errs []error
	for _, name := range []string{agentSocket, qmpSocket, pidFile} {
		if err := os.Remove(filepath.Join(runDir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// isCrossDevice reports whether err is EXDEV (a link or rename across
// file systems).
func isCrossDevice(err error) bool { return errors.Is(err, unix.EXDEV) }
