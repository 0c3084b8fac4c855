package qemu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/hypervisor"
)

var _ hypervisor.Capturer = (*machine)(nil)

// Capture implements hypervisor.Capturer. It is Suspend without the
// quit: the agent detached, the vCPUs stopped, the state written by a
// migration to a file, the directory committed (marked Clonable), and
// the vCPUs run again when asked. A machine with a memory file (read
// from its command line, so an attached machine captures the same way)
// migrates with x-ignore-shared, its stream holding devices only, and
// its memory file is hard-linked into the state directory (copied when
// the state is on another file system). A machine whose RAM is a shared
// memfd (Spec.SharedMemory) migrates the same way, and its memory is
// copied from the memfd into the state, sparsely, before its vCPUs run
// again. The manifest names the disks
// QEMU has before any layering (see block.go): a machine an earlier
// capture layered is captured, or layered again, as it runs now.
func (m *machine) Capture(ctx context.Context, stateDir string, opt hypervisor.CaptureOptions) error {
	if err := m.capture(ctx, stateDir, opt); err != nil {
		return fmt.Errorf("capture qemu pid %d to %s: %w", m.handle.PID, stateDir, err)
	}
	return nil
}

func (m *machine) capture(ctx context.Context, stateDir string, opt hypervisor.CaptureOptions) error {
	if !filepath.IsAbs(stateDir) {
		return fmt.Errorf("%w: state directory path is not absolute", api.ErrInvalid)
	}
	if m.exited() {
		return errExited
	}
	memFile, memfd := sharedRAMFromArgs(m.args)
	if memFile != "" && opt.Resume {
		return fmt.Errorf("%w: the machine's RAM is the shared file %s, which becomes the captured memory: it cannot run again after the capture", api.ErrInvalid, memFile)
	}
	m.qmpMu.Lock()
	defer m.qmpMu.Unlock()
	shape, err := m.shape(ctx)
	if err != nil {
		return err
	}
	if err := checkOverlays(shape.Disks, opt.Overlays); err != nil {
		return err
	}
	defer m.setSuspending(false)
	detachBegin := time.Now()
	status, err := m.prepareSave(ctx)
	if err != nil {
		return err
	}
	detached := time.Since(detachBegin)
	wasRunning := status == stateRunning

	w, err := hypervisor.CreateState(stateDir)
	if err != nil {
		return err
	}
	begin := time.Now()
	man := hypervisor.Manifest{Backend: backendName, Format: stateFormat, Machine: shape, Clonable: true}
	if len(opt.Overlays) > 0 {
		// With the vCPUs stopped, the disks hold what the state will
		// expect of them; the layers are made before the save, which
		// leaves QEMU's block devices inactive when it completes.
		err := m.session(ctx, func(q *QMP) error {
			if _, err := q.Execute(ctx, "stop", nil); err != nil {
				return err
			}
			return layerDisks(ctx, q, shape.Disks, opt.Overlays)
		})
		if err != nil {
			w.Abort()
			m.undoSave(ctx, wasRunning)
			return fmt.Errorf("layer the disks: %w", err)
		}
	}
	err = m.saveTo(ctx, w.Path(migrationFile), memFile != "" || memfd)
	if err == nil && memfd {
		// The vCPUs are stopped: the memory is as the devices expect.
		err = m.copyMemfd(w.Path(memoryFile))
	}
	if err != nil {
		w.Abort()
		m.undoSave(ctx, wasRunning)
		return err
	}
	paused := time.Since(begin)
	resumed := opt.Resume && wasRunning
	if resumed {
		// The stream is whole once QEMU reports the save completed: the
		// guest runs again before the file is made durable. After a
		// completed migration QEMU is "postmigrate"; cont takes its disks
		// back and runs the guest.
		if err := m.session(ctx, func(q *QMP) error { _, err := q.Execute(ctx, "cont", nil); return err }); err != nil {
			w.Abort()
			return fmt.Errorf("the machine did not resume after its capture: %w", err)
		}
		paused = time.Since(begin)
	}
	if memFile != "" || memfd {
		man.Format = sharedMemoryFormat
		man.Files = []hypervisor.StateFile{
			{Name: migrationFile, Holds: []string{hypervisor.HoldsDevices}},
			{Name: memoryFile, Holds: []string{hypervisor.HoldsMemory}},
		}
		if memFile != "" {
			err = linkOrCopy(memFile, w.Path(memoryFile))
		}
	} else {
		man.Files = []hypervisor.StateFile{{Name: migrationFile, Holds: []string{hypervisor.HoldsMemory, hypervisor.HoldsDevices}}}
	}
	if err == nil {
		err = w.Commit(man)
	}
	if err != nil {
		w.Abort()
		if !resumed {
			m.undoSave(ctx, wasRunning)
		}
		return err
	}
	memory := "stream"
	switch {
	case memFile != "":
		memory = "file"
	case memfd:
		memory = "memfd copy"
	}
	m.log.Info("machine captured", "state_dir", stateDir, "memory", memory, "resumed", resumed,
		"detach_agent", detached.Round(time.Millisecond), "paused", paused.Round(time.Millisecond))
	return nil
}

// linkOrCopy makes dst the file src: a hard link, or a sparse copy when
// they are on different file systems.
func linkOrCopy(src, dst string) error {
	err := os.Link(src, dst)
	if err == nil || !errors.Is(err, os.ErrInvalid) && !isCrossDevice(err) {
		return err
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	return copySparseTo(dst, in)
}

// layerDisks moves the writes of each disk i with overlays[i] set to a
// new qcow2 overlay at that path (QMP blockdev-snapshot-sync, the machine
// stopped), over the disk, whose file is then made read-only: the disk
// layer. No file is renamed: QEMU reopens its images by name (to drop or
// take write access, as a migration's end and a cont do), so each must
// stay where it was opened. Only qcow2 disks are layered, so that the
// disk a clone is made over has the format the state was saved with.
func layerDisks(ctx context.Context, q *QMP, disks []hypervisor.Disk, overlays []string) error {
	for i, overlay := range overlays {
		if overlay == "" {
			continue
		}
		if _, err := q.Execute(ctx, "blockdev-snapshot-sync", map[string]any{
			"device": fmt.Sprintf("disk%d", i), "snapshot-file": overlay, "format": "qcow2", "mode": "absolute-paths",
		}); err != nil {
			return fmt.Errorf("disk %d: new overlay: %w", i, err)
		}
		if err := os.Chmod(disks[i].Path, 0o444); err != nil {
			return err
		}
	}
	return nil
}

// checkOverlays refuses overlays that do not fit the machine's disks.
func checkOverlays(disks []hypervisor.Disk, overlays []string) error {
	if len(overlays) == 0 {
		return nil
	}
	if len(overlays) != len(disks) {
		return fmt.Errorf("%w: %d overlays for %d disks", api.ErrInvalid, len(overlays), len(disks))
	}
	for i, l := range overlays {
		switch {
		case l == "":
		case !filepath.IsAbs(l):
			return fmt.Errorf("%w: overlay %q of disk %d is not an absolute path", api.ErrInvalid, l, i)
		case disks[i].ReadOnly:
			return fmt.Errorf("%w: disk %d is read-only: it needs no layer", api.ErrInvalid, i)
		case disks[i].Format != "qcow2":
			return fmt.Errorf("%w: disk %d is %s: only qcow2 disks are layered while they run", api.ErrInvalid, i, disks[i].Format)
		}
	}
	return nil
}
