package vm

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/agent"
	"github.com/openslicer/openslicer/internal/hypervisor"
	"github.com/openslicer/openslicer/internal/vmstate"
)

// Shutdown actions.
const (
	ActionReboot   = "reboot"
	ActionShutdown = "shutdown"
)

// stopTimeout bounds how long a guest asked to reboot or power off through
// the API gets before it is killed.
const stopTimeout = 30 * time.Second

// Pause freezes a running VM's vCPUs; its memory stays allocated.
func (m *Manager) Pause(ctx context.Context, hostname string) error {
	in, err := m.get(hostname)
	if err != nil {
		return err
	}
	return m.setPaused(ctx, in, vmstate.Pause)
}

// Resume thaws a paused VM. A suspended VM, which lists as Paused to
// Slicer's clients, is restored: its memory and processes come back as they
// were, as a paused VM's do.
func (m *Manager) Resume(ctx context.Context, hostname string) error {
	in, err := m.get(hostname)
	if err != nil {
		return err
	}
	in.mu.Lock()
	restore := vmstate.Allowed(vmstate.Restore, in.stateLocked())
	in.mu.Unlock()
	if restore {
		return m.Restore(ctx, hostname, CreateOptions{})
	}
	if err := m.setPaused(ctx, in, vmstate.Resume); err != nil {
		return err
	}
	m.resyncAfterResume(ctx, hostname)
	return nil
}

// setPaused pauses or resumes (op) the machine of in, with no lock held
// during the call.
func (m *Manager) setPaused(ctx context.Context, in *instance, op vmstate.Op) error {
	c, err := m.claim(in, op)
	if err != nil {
		return err
	}
	if op == vmstate.Pause {
		err = c.machine.Pause(ctx)
	} else {
		err = c.machine.Resume(ctx)
	}
	if err != nil {
		err = fmt.Errorf("%s vm %q: %w", op, c.vm, err)
	}
	return m.settle(in, c, err, nil)
}

// Shutdown asks the guest to reboot or power off and waits, bounded, for
// the machine to exit; a guest that does not comply is killed. On this
// daemon's backends both actions end the VM process: an ephemeral VM is then
// removed with its disk, a persistent one is kept, stopped. A paused VM is
// resumed first, so that its guest can hear the request.
func (m *Manager) Shutdown(ctx context.Context, hostname, action string) error {
	switch action {
	case "":
		action = ActionReboot // Slicer's SDK default
	case ActionReboot, ActionShutdown:
	default:
		return fmt.Errorf("%w: action %q: want reboot or shutdown", api.ErrInvalid, action)
	}
	in, err := m.get(hostname)
	if err != nil {
		return err
	}
	if err := in.check(vmstate.Shutdown); err != nil {
		return err
	}
	in.mu.Lock()
	paused := vmstate.Allowed(vmstate.Resume, in.stateLocked())
	in.mu.Unlock()
	if paused {
		if err := m.setPaused(ctx, in, vmstate.Resume); err != nil {
			return fmt.Errorf("shutdown vm %q: %w", hostname, err)
		}
	}
	in.mu.Lock()
	machine, client, state := in.machine, in.agent, in.stateLocked()
	in.mu.Unlock()
	if machine == nil { // it stopped meanwhile
		return &vmstate.Refused{VM: hostname, Op: vmstate.Shutdown, State: state}
	}
	m.stopGuest(ctx, hostname, machine, client, action, stopTimeout)
	return nil
}

// stopGuest asks the guest's agent to reboot or power off (POST
// /v1/power; the agent shuts the guest down itself, or asks the guest's
// own init) and waits for the machine to exit, killing it after timeout.
// The request waits for an agent that is not up yet. Only an agent older
// than the power route (it answers 404, a VM a daemon upgrade left
// running) is asked the way it was then: busybox's reboot or poweroff, run
// as root, which signal PID 1.
func (m *Manager) stopGuest(ctx context.Context, hostname string, machine hypervisor.Machine, client *agent.Client, action string, timeout time.Duration) {
	power := powerAction(action)
	if client != nil {
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
		go func() {
			defer cancel()
			err := client.Power(actx, power)
			if errors.Is(err, api.ErrNotFound) {
				root := uint32(0)
				// The call may not return: the guest goes away under it.
				_, err = client.ExecBuffered(actx, &api.ExecRequest{Command: power, UID: &root, GID: &root})
			}
			if err != nil && actx.Err() == nil {
				m.log.Warn("ask guest to "+power, "vm", hostname, "err", err)
			}
		}()
	}
	select {
	case <-machine.Done():
	case <-time.After(timeout):
		m.log.Warn("guest did not stop in time: killing it", "vm", hostname, "action", action, "after", timeout)
		machine.Kill(context.WithoutCancel(ctx))
	}
}

// powerAction is the agent's power action for a shutdown action.
func powerAction(action string) string {
	if action == ActionReboot {
		return agent.Reboot
	}
	return agent.PowerOff
}
