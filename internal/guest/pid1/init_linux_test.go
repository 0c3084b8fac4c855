package pid1

import (
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func TestShutdownCommand(t *testing.T) {
	tests := []struct {
		sig  syscall.Signal
		cmd  int
		stop bool
	}{
		{unix.SIGTERM, unix.LINUX_REBOOT_CMD_RESTART, true},
		{unix.SIGUSR1, unix.LINUX_REBOOT_CMD_POWER_OFF, true},
		{unix.SIGUSR2, unix.LINUX_REBOOT_CMD_POWER_OFF, true},
		{unix.SIGINT, 0, false},
		{unix.SIGHUP, 0, false},
	}
	for _, tt := range tests {
		cmd, stop := shutdownCommand(tt.sig)
		if cmd != tt.cmd || stop != tt.stop {
			t.Errorf("shutdownCommand(%v) = %#x, %v; want %#x, %v", tt.sig, cmd, stop, tt.cmd, tt.stop)
		}
	}
}
