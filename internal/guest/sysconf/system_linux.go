package sysconf

import (
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// SetHostname sets the hostname from the kernel command line, if it names
// one, and writes /etc/hostname to match.
func SetHostname() error {
	cmdline, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return err
	}
	name, ok := KernelParam(string(cmdline), hostnameParam)
	if !ok || name == "" {
		return nil
	}
	return ApplyIdentity(Identity{Hostname: name}, "/")
}

// LoopbackUp sets the loopback interface up.
func LoopbackUp() error { return linkUp("lo") }

// SetClock sets the wall clock (CLOCK_REALTIME) to t.
func SetClock(t time.Time) error {
	ts := unix.NsecToTimespec(t.UnixNano())
	return unix.ClockSettime(unix.CLOCK_REALTIME, &ts)
}

// WaitForFile polls for path until it exists or timeout passes.
func WaitForFile(path string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		_, err := os.Stat(path)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not appear within %s: %w", path, timeout, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
