package qemu

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/openslicer/openslicer/api"
)

// Suspend and restore are QEMU migration to and from a file in a state
// directory (hypervisor.CreateState): one stream, vm.migration, holding
// memory and device state, and the manifest.
//
// Suspend first detaches the guest agent (see detachAgent), then stops the
// vCPUs, hands QEMU a descriptor of a new file in the state directory
// being written (QMP getfd) and migrates to it (uri fd:NAME), polls
// query-migrate until the save completes, commits the directory (the
// file and the manifest made durable, the directory renamed into place)
// and quits QEMU. QEMU 7.2 has no file: migration URI. A descriptor we
// opened, rather than an exec:cat pipe, means QEMU writes the file itself:
// the file is whole once QEMU reports the save completed (through a pipe,
// cat may still be writing), and no shell is involved. The manifest's
// machine shape is read from the process's command line (shapeFromArgs),
// so a machine an earlier daemon started suspends the same way, except
// its disks, which QEMU is asked for (query-block, see block.go): a
// capture may have moved them onto overlays since the machine started.
//
// Restore checks the manifest against the spec (Backend.stateToLoad),
// starts QEMU with the same command line plus -incoming defer (see Args),
// hands it a descriptor of the stream (getfd, migrate-incoming fd:NAME),
// waits while the run state is "inmigrate", and resumes the guest: the saved
// run state was "paused" (Suspend stops the vCPUs first), so QEMU does
// not start them by itself. A single state file from before state
// directories is loaded as it is.

// saveBandwidth is the migration bandwidth cap set for a save, in bytes per
// second. QEMU's default (128 MiB/s in 7.2) is meant for live migration
// over a network and bounds the save of a stopped machine: a 98 MiB state
// took 0.9 s with it and 0.3 s without (measured 2026-11-23, TCG host).
const saveBandwidth = 1 << 40

// stateFDName names the state file's descriptor in QEMU's monitor.
const stateFDName = "slicer-state"

// Run states of QEMU's query-status that suspend and restore act on.
const (
	stateRunning   = "running"
	statePaused    = "paused"
	stateInMigrate = "inmigrate"
)

// migrationStatus is the part of query-migrate's answer a save looks at.
type migrationStatus struct {
	Status    string `json:"status"`
	ErrorDesc string `json:"error-desc"`
}

// saveDone interprets query-migrate during a save: true once it has
// completed, an error once it has failed or been cancelled, false while
// it is still under way.
func saveDone(st migrationStatus) (bool, error) {
	switch st.Status {
	case "completed":
		return true, nil
	case "failed":
		if st.ErrorDesc != "" {
			return false, fmt.Errorf("save failed: %s", st.ErrorDesc)
		}
		return false, errors.New("save failed")
	case "cancelled", "cancelling":
		return false, errors.New("save was cancelled")
	case "none", "":
		// Before the migration thread has set up; query-migrate answers
		// {} when no migration has ever started.
		return false, nil
	}
	return false, nil // setup, active, device, pre-switchover, ...
}

// migrating reports whether a migration in query-migrate status is still
// under way, being set up or being cancelled: a time when cont is refused.
func migrating(status string) bool {
	switch status {
	case "", "none", "completed", "failed", "cancelled":
		return false
	}
	return true
}

// canSuspend reports whether a machine in run state status can be saved.
func canSuspend(status string) error {
	if status == stateRunning || status == statePaused {
		return nil
	}
	return fmt.Errorf("%w: machine is %q, not running or paused", api.ErrConflict, status)
}

// agentPortOpen reports, from query-chardev's answer, whether the guest
// has its end of the agent port open: QEMU reports a virtserialport's
// guest side as its chardev's frontend-open.
func agentPortOpen(queryChardev json.RawMessage) (bool, error) {
	var chardevs []struct {
		Label        string `json:"label"`
		FrontendOpen bool   `json:"frontend-open"`
	}
	if err := json.Unmarshal(queryChardev, &chardevs); err != nil {
		return false, fmt.Errorf("decode query-chardev answer: %w", err)
	}
	for _, c := range chardevs {
		if c.Label == agentChardevID {
			return c.FrontendOpen, nil
		}
	}
	return false, fmt.Errorf("no chardev %q in query-chardev answer", agentChardevID)
}

// restoreAction is what to do next about a machine loading a state file.
type restoreAction int

const (
	restoreWait   restoreAction = iota // still loading: ask again
	restoreResume                      // loaded, vCPUs stopped: cont
	restoreDone                        // loaded and running
)

// restoreStep decides the next step of a restore from the run state.
func restoreStep(status string) (restoreAction, error) {
	switch status {
	case stateInMigrate:
		return restoreWait, nil
	case statePaused:
		return restoreResume, nil
	case stateRunning:
		return restoreDone, nil
	}
	return 0, fmt.Errorf("machine is %q after loading its state", status)
}
