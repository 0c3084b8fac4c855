package pid1

import (
	"testing"

	"golang.org/x/sys/unix"

	"github.com/openslicer/openslicer/internal/agent"
)

func TestPowerCommands(t *testing.T) {
	for _, tc := range []struct {
		action string
		cmd    int
		sig    unix.Signal
		ok     bool
	}{
		{agent.PowerOff, unix.LINUX_REBOOT_CMD_POWER_OFF, 38, true}, // kill -l: 38 is SIGRTMIN+4
		{agent.Reboot, unix.LINUX_REBOOT_CMD_RESTART, 39, true},     // SIGRTMIN+5
		{"halt", 0, 0, false},
	} {
		cmd, err := rebootCommand(tc.action)
		if (err == nil) != tc.ok || cmd != tc.cmd {
			t.Errorf("rebootCommand(%q) = %#x, %v; want %#x, ok %v", tc.action, cmd, err, tc.cmd, tc.ok)
		}
		sig, err := initSignal(tc.action)
		if (err == nil) != tc.ok || sig != tc.sig {
			t.Errorf("initSignal(%q) = %d, %v; want %d, ok %v", tc.action, sig, err, tc.sig, tc.ok)
		}
	}
}
