package pid1

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/openslicer/openslicer/internal/agent"
)

// How the agent powers the guest off or reboots it when the host asks
// (POST /v1/power), with no tool of the guest's: as PID 1 it does it
// itself (shutdown: processes ended, file systems synced and remounted
// read-only, reboot(2)); beside another init (systemd) it asks that init,
// with the signal systemd(1) documents for the action, so that the
// system's own shutdown runs.

// sigRTMin is SIGRTMIN as C programs see it (glibc keeps the kernel's
// first two real-time signals), the base systemd(1) counts its
// SIGRTMIN+n signals from.
const sigRTMin = 34

// rebootCommand is the reboot(2) command of a power action. (QEMU runs
// with -no-reboot, so a restart ends the VM as a power-off does; the
// daemon tells the two apart itself.)
func rebootCommand(action string) (int, error) {
	switch action {
	case agent.PowerOff:
		return unix.LINUX_REBOOT_CMD_POWER_OFF, nil
	case agent.Reboot:
		return unix.LINUX_REBOOT_CMD_RESTART, nil
	}
	return 0, fmt.Errorf("power action %q: want %q or %q", action, agent.PowerOff, agent.Reboot)
}

// initSignal is the signal that asks systemd, as PID 1, for a power
// action: SIGRTMIN+4 starts poweroff.target, SIGRTMIN+5 reboot.target.
func initSignal(action string) (unix.Signal, error) {
	switch action {
	case agent.PowerOff:
		return unix.Signal(sigRTMin + 4), nil
	case agent.Reboot:
		return unix.Signal(sigRTMin + 5), nil
	}
	return 0, fmt.Errorf("power action %q: want %q or %q", action, agent.PowerOff, agent.Reboot)
}

// powerFunc returns the agent server's power setter (guest.Init.Power).
// In the agent as PID 1 it hands the reboot(2) command to Run's loop on
// req, which shuts the machine down; a request while one is under way
// changes nothing. In an agent beside another init it signals PID 1.
func powerFunc(req chan<- int) func(action string) error {
	return func(action string) error {
		if os.Getpid() != 1 {
			sig, err := initSignal(action)
			if err != nil {
				return err
			}
			return unix.Kill(1, sig)
		}
		cmd, err := rebootCommand(action)
		if err != nil {
			return err
		}
		select {
		case req <- cmd:
		default:
		}
		return nil
	}
}
