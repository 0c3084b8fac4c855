package hypervisor

import (
	"context"
)

// Capture is the optional capability of a Machine to save its state
// without ending: the guest pauses for the capture only (or stays paused,
// when asked), and the state directory it writes can be restored any
// number of times, as clones.
//
// A captured state directory is a suspended one (state.go) whose manifest
// is marked Clonable: a restore of it does not have to name the same
// disks or MAC as the captured machine. The caller gives each clone its
// own disk over a frozen copy of the captured one (image.DiskLayers), and
// its own identity once it runs; the device state still holds the
// captured MAC until the guest sets another.
//
// Memory is captured one of two ways:
//
//   - A machine started with Spec.MemoryFile keeps its RAM in that file,
//     mapped shared. The capture writes only device state, and links the
//     file into the state directory as its memory. A restore maps it
//     privately: the clone reads the template's pages from the page
//     cache as it touches them (nothing is read before the guest runs),
//     and only the pages it writes become its own. Such a machine must
//     not run again after its capture (its writes would reach the
//     captured memory): CaptureOptions.Resume is refused.
//   - Any other machine writes its memory into the state as Suspend
//     does, and may resume.
//
// Prior art: Kata Containers' VM templating (a file-backed template
// mapped privately by its clones, QEMU's x-ignore-shared migration
// capability).

// CaptureOptions say what happens to the machine after a capture.
type CaptureOptions struct {
	// Resume runs the guest again once its state is written; without it
	// the machine stays paused (a template's source, which the caller
	// then kills).
	Resume bool
	// Overlays, when set, has one path per disk of the machine, in
	// order: the machine goes on writing to a new qcow2 disk at that
	// path, copy-on-write over the disk, whose file from then on holds
	// the disk's content as captured, read-only (a disk layer; a clone's
	// disk is made over it). "" leaves a disk as it is (read-only disks,
	// or a machine the caller ends after the capture). The files keep
	// their paths, which the running process may reopen by name. From
	// then on the overlays are the machine's disks: a later Suspend or
	// Capture records them in its manifest (so a restore names the
	// overlay), and a later Capture with Overlays layers them in turn. A
	// backend that cannot layer a disk refuses with api.ErrInvalid
	// before anything is done.
	Overlays []string
}

// Capturer is implemented by machines that can be captured. Its
// contract, which hypervisortest.Run checks when a backend's machines
// implement it:
//
//   - Capture writes a state directory at stateDir (absolute; replaced
//     if present, created only once complete) whose manifest is
//     Clonable, and which Spec.RestoreFrom restores, any number of
//     times, on machines of the same shape with their own disks, MAC and
//     run directory.
//   - The machine keeps running (Resume) or stays paused; agent
//     connections are closed first, as for Suspend, so that the guest
//     waits for a new host. A failed capture leaves no directory and the
//     machine as it was.
//   - On a machine that has ended it fails with api.ErrConflict; a
//     Resume of a machine with a memory file is api.ErrInvalid.
type Capturer interface {
	Capture(ctx context.Context, stateDir string, opt CaptureOptions) error
}

// CanCapture returns m as a Capturer when its backend supports capture.
func CanCapture(m Machine) (Capturer, bool) {
	c, ok := m.(Capturer)
	return c, ok
}
