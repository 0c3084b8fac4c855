package vm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/hypervisor"
	"github.com/openslicer/openslicer/internal/store"
	"github.com/openslicer/openslicer/internal/vmstate"
)

// Memory commits and hot forks (mode "memory", an extension of §3.14).
//
// A memory commit captures a running VM (hypervisor.Capturer): its
// memory and devices into CommitsDir/<id>/state, and its disk, which
// QEMU moves onto a new qcow2 overlay (SourceOverlay, beside the old
// disk in DisksDir) while the vCPUs are stopped. The old disk file stays
// where it is, read-only, as the commit's layer (a running QEMU reopens
// its images by name, so it cannot be moved): the commit owns it, and
// the source's record names the overlay as its disk. The source pauses
// only for the capture, then runs on.
//
// A source goes on like any running VM: the backend records the disks
// its machine writes now, not those it started with, so it may be
// suspended (the state names the overlay, as its record does) or
// memory-committed again. A second memory commit layers the overlay in
// turn: the first overlay stays where it is, read-only, as the second
// commit's layer, over the first commit's (its Parent), and the source
// moves onto a new overlay. Each layer is owned by its commit, deleted
// with it once nothing is over it (commitUsers).
//
// A fork of a memory commit restores the state on a child whose disk is
// copy-on-write over the layer, with a network of its own when the group
// has one (planned and set up before the restore: its TAP, and in
// isolated mode its namespace and rules), then gives it an identity of
// its own (freshIdentity: hostname, MAC, address, route and DNS,
// machine-id, fresh kernel RNG entropy, clock) before it is answered. The
// child has its source's processes and files; connections its source
// had open are not its own (their peers know the source's address).
//
// What is refused, and why:
//   - a disk that is not qcow2: only qcow2 disks are layered while they
//     run.
//
// Crash safety: the commit is recorded (CommitWriting) before the
// capture. Recovery (recoverMemoryCommit) finds either no overlay (the
// source never moved: the state and record are removed), or the overlay
// (the source runs on it over the layer: the source's record is moved
// onto it and the commit is kept as a disk commit, its layer being a
// whole, crash-consistent disk, without the state, which may be partial).

// hotOverlayPath is the disk a memory commit id moves the VM hostname onto.
func (m *Manager) hotOverlayPath(hostname, id string) string {
	return filepath.Join(m.opt.DisksDir, hostname+"."+id+".qcow2")
}

// checkCapture says why the VM of record rec, with machine, cannot be
// committed with its memory ("" when it can).
func checkCapture(rec store.VM, machine hypervisor.Machine) error {
	if f := diskFormat(rec); f != "qcow2" {
		return fmt.Errorf("memory commit of vm %q: its disk is %s: only qcow2 disks are layered while they run: %w", rec.Hostname, f, api.ErrConflict)
	}
	if _, ok := hypervisor.CanCapture(machine); !ok {
		return fmt.Errorf("memory commit of vm %q: its backend cannot capture a running machine: %w", rec.Hostname, api.ErrNotImplemented)
	}
	return nil
}

// commitMemory makes a memory commit of the running VM in (see the top of
// this file). The caller holds the cache key.
func (m *Manager) commitMemory(ctx context.Context, in *instance, req api.CommitVMRequest) (api.CommitVMResponse, error) {
	c, err := m.claim(in, vmstate.Capture)
	if err != nil {
		return api.CommitVMResponse{}, fmt.Errorf("%w (a memory commit needs a running vm)", err)
	}
	// The table refuses an exit while the VM is Committing, so the
	// watcher lets one that happened meanwhile go: it is dealt with once
	// the claim has ended, as the watcher would have.
	defer func() {
		select {
		case <-c.machine.Done():
			m.exited(in, c.machine)
		default:
		}
	}()
	in.mu.Lock()
	rec, hasNet := in.rec, in.plan != nil
	in.mu.Unlock()
	if err := checkCapture(rec, c.machine); err != nil {
		m.unclaim(in, c)
		return api.CommitVMResponse{}, err
	}
	capturer, _ := hypervisor.CanCapture(c.machine)

	id := newCommitID()
	commit := store.Commit{
		ID: id, State: store.CommitWriting, Mode: api.CommitModeMemory, CreatedAt: time.Now().UTC(),
		Tags: req.Tags, Labels: req.Labels, CacheKey: req.CacheKey,
		Source: rec.Hostname, Group: rec.Group,
		Layer: rec.Disk, LayerFormat: "qcow2", SourceDisk: rec.Disk, SourceFormat: "qcow2",
		StateDir: filepath.Join(m.commitDir(id), "state"), SourceOverlay: m.hotOverlayPath(rec.Hostname, id),
		Parent: rec.DiskBase, CPUs: rec.CPUs, RamBytes: rec.RamBytes, VMTags: withoutName(rec.Tags),
		Secrets: rec.Secrets, NoSecrets: rec.NoSecrets, Backend: m.backendName(rec), Template: rec.Template,
		HasNetwork: hasNet,
	}
	if err := m.opt.Store.CreateCommit(commit); err != nil {
		m.unclaim(in, c)
		return api.CommitVMResponse{}, err
	}
	begin := time.Now()
	err = os.MkdirAll(m.commitDir(id), 0o700)
	if err == nil {
		releaseAgent(ctx, m.log.With("vm", rec.Hostname), in.agentClient())
		err = capturer.Capture(ctx, commit.StateDir, hypervisor.CaptureOptions{Resume: true, Overlays: []string{commit.SourceOverlay}})
	}
	if err != nil {
		err = fmt.Errorf("memory commit of vm %q: %w", rec.Hostname, err)
		if _, serr := os.Stat(commit.SourceOverlay); serr == nil {
			// The machine moved onto the overlay before the capture
			// failed: its old disk is a layer it reads, kept as a disk
			// commit (see the top of this file).
			commit.Mode, commit.StateDir = api.CommitModeDisk, ""
			err = errors.Join(err, m.finishMemoryCommit(in, c, commit))
			m.log.Warn("memory commit failed after the vm's disk moved: kept as a disk commit", "vm", rec.Hostname, "commit", id, "err", err)
			return api.CommitVMResponse{}, err
		}
		m.unclaim(in, c)
		return api.CommitVMResponse{}, errors.Join(err, os.RemoveAll(m.commitDir(id)), m.opt.Store.DeleteCommit(id))
	}
	if err := m.finishMemoryCommit(in, c, commit); err != nil {
		return api.CommitVMResponse{}, err
	}
	m.log.Info("vm committed with its memory", "vm", rec.Hostname, "commit", id, "took", time.Since(begin).Round(time.Millisecond),
		"cache_key", commit.CacheKey)
	return api.CommitVMResponse{
		Hostname: rec.Hostname, CommitID: id, Status: api.CommitStatusCommitted,
		ParentStatus: api.StateRunning, Mode: commit.Mode,
		Tags: commit.Tags, Labels: commit.Labels, CacheKey: commit.CacheKey,
	}, nil
}

// movedOnto is rec once a memory commit c has moved its machine's disk
// onto c's overlay.
func movedOnto(rec store.VM, c store.Commit) store.VM {
	rec.Disk, rec.DiskFormat, rec.DiskBase, rec.CommitID = c.SourceOverlay, "qcow2", c.ID, c.ID
	return rec
}

// finishMemoryCommit records commit ready together with the source,
// whose disk is now the overlay, and ends claim cl. A failure to write
// leaves the commit CommitWriting, for the next start to settle.
func (m *Manager) finishMemoryCommit(in *instance, cl *claim, commit store.Commit) error {
	commit.State = store.CommitReady
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.busy == cl {
		in.busy = nil
	}
	next := movedOnto(in.rec, commit)
	if err := m.opt.Store.FinishCommit(commit, next); err != nil {
		return fmt.Errorf("memory commit of vm %q: %w", in.rec.Hostname, err)
	}
	in.rec = next
	return nil
}

// recoverMemoryCommit settles a memory commit an earlier daemon left
// being written (see the top of this file).
func (m *Manager) recoverMemoryCommit(c store.Commit) error {
	if _, err := os.Stat(c.SourceOverlay); err != nil {
		m.log.Info("removing a memory commit cut short before its vm's disk moved", "commit", c.ID, "vm", c.Source)
		return errors.Join(os.RemoveAll(m.commitDir(c.ID)), m.opt.Store.DeleteCommit(c.ID))
	}
	src, err := m.opt.Store.Get(c.Source)
	if err != nil || src.Disk != c.SourceDisk {
		// No source runs over the layer any more (or it already moved):
		// nothing needs it.
		m.log.Info("removing a memory commit cut short whose vm is gone", "commit", c.ID, "vm", c.Source)
		return errors.Join(removeFile(c.SourceOverlay), m.dropCommit(c))
	}
	m.log.Warn("a memory commit cut short after its vm's disk moved: kept as a disk commit, without memory", "commit", c.ID, "vm", c.Source)
	c.Mode, c.StateDir, c.State = api.CommitModeDisk, "", store.CommitReady
	return errors.Join(os.RemoveAll(m.commitDir(c.ID)), m.opt.Store.FinishCommit(c, movedOnto(src, c)))
}

// isCloneState reports whether dir is a state many VMs restore from (a
// snapshot template's or a memory commit's), as opposed to a suspended
// VM's own: a clone is given a fresh identity (freshIdentity), not its
// own back.
func (m *Manager) isCloneState(dir string) bool {
	return within(m.opt.TemplatesDir, dir) || within(m.opt.CommitsDir, dir)
}

// within reports whether path is below dir ("" is nothing's).
func within(dir, path string) bool {
	if dir == "" {
		return false
	}
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != "." && !strings.HasPrefix(rel, "..")
}
