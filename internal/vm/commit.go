package vm

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/store"
	"github.com/openslicer/openslicer/internal/vmstate"
)

// Commits and cold forks (spec §3.14).
//
// A commit makes a stopped persistent VM's disk a read-only layer, owned
// by the commit, under CommitsDir/<id>/; the VM's own disk becomes a new
// copy-on-write disk over that layer, so the VM goes on as it was (Layers
// says how, by disk format). A fork is a new VM in the source's group
// whose disk is copy-on-write over the layer (fork.go).
//
// The store records a commit before its layer is made, in CommitWriting;
// the commit and the source's record are then written in one transaction
// when it is ready. A record found in CommitWriting at start is a commit
// cut short, undone from what is on disk (Layers.Unfreeze); one found in
// CommitDeleting is removed. Deleting a commit is refused while its
// source VM, any VM forked from it (or whose disk is over its layer), or
// any commit whose layer is over it, exists.

// Layers makes commit layers and the disks over them (image.DiskLayers).
type Layers interface {
	// Freeze makes layer, a read-only layer holding what the stopped
	// VM's disk holds now, and leaves at disk a disk of the same format
	// that reads the same and writes apart from the layer. On failure it
	// undoes what it did.
	Freeze(ctx context.Context, disk, format, layer string) error
	// Unfreeze undoes a Freeze cut short (a crash at any step), from what
	// it finds on disk: the disk is as it was, the layer gone.
	Unfreeze(disk, format, layer string) error
	// Overlay makes dst a disk over layer and returns its format.
	Overlay(ctx context.Context, layer, layerFormat, dst string) (string, error)
	// Drop removes a layer no disk is over.
	Drop(layer string) error
}

// commitLocks order commits and forks.
type commitLocks struct {
	// mu is held shared by a fork from looking its commit up until its
	// child is in the table, and exclusively by a commit delete, so a
	// commit is never removed under a fork being made.
	mu sync.RWMutex
	// keys serialises the commits that claim one cache key.
	keysMu sync.Mutex
	keys   map[string]*keyLock
}

type keyLock struct {
	ch    chan struct{} // holds a token while the key is locked
	users int
}

// lockKey waits (or until ctx ends) for the cache key to be free and takes
// it; "" takes nothing. The returned function releases it.
func (c *commitLocks) lockKey(ctx context.Context, key string) (func(), error) {
	if key == "" {
		return func() {}, nil
	}
	c.keysMu.Lock()
	if c.keys == nil {
		c.keys = map[string]*keyLock{}
	}
	k := c.keys[key]
	if k == nil {
		k = &keyLock{ch: make(chan struct{}, 1)}
		c.keys[key] = k
	}
	k.users++
	c.keysMu.Unlock()
	leave := func() {
		c.keysMu.Lock()
		if k.users--; k.users == 0 {
			delete(c.keys, key)
		}
		c.keysMu.Unlock()
	}
	select {
	case k.ch <- struct{}{}:
		return func() { <-k.ch; leave() }, nil
	case <-ctx.Done():
		leave()
		return nil, fmt.Errorf("wait for the commit holding cache key %q: %w", key, ctx.Err())
	}
}

// Limits on a commit's labels, as tags have theirs (api.MaxTagsPerVM).
const (
	maxCommitLabels     = 256
	maxCommitLabelBytes = 1024
)

// checkCommitRequest validates a commit's tags, labels and cache key.
func checkCommitRequest(req api.CommitVMRequest) error {
	var errs []error
	if len(req.Tags) > api.MaxTagsPerVM {
		errs = append(errs, fmt.Errorf("%d tags: at most %d", len(req.Tags), api.MaxTagsPerVM))
	}
	for _, t := range req.Tags {
		if t == "" || len(t) > api.MaxTagBytes {
			errs = append(errs, fmt.Errorf("tag %.40q: want 1 to %d bytes", t, api.MaxTagBytes))
		}
	}
	if len(req.Labels) > maxCommitLabels {
		errs = append(errs, fmt.Errorf("%d labels: at most %d", len(req.Labels), maxCommitLabels))
	}
	for k, v := range req.Labels {
		if k == "" || len(k)+len(v) > maxCommitLabelBytes {
			errs = append(errs, fmt.Errorf("label %.40q: want a key and at most %d bytes in all", k, maxCommitLabelBytes))
		}
	}
	if req.Mode != "" && req.Mode != api.CommitModeDisk && req.Mode != api.CommitModeMemory {
		errs = append(errs, fmt.Errorf("mode %.40q: want %s or %s", req.Mode, api.CommitModeDisk, api.CommitModeMemory))
	}
	if len(req.CacheKey) > api.MaxTagBytes {
		errs = append(errs, fmt.Errorf("cache_key of %d bytes: at most %d", len(req.CacheKey), api.MaxTagBytes))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: commit: %w", api.ErrInvalid, errors.Join(errs...))
	}
	return nil
}

// newCommitID returns a fresh commit ID, cmt-<16 hex digits>.
func newCommitID() string {
	var b [8]byte
	rand.Read(b[:])
	return "cmt-" + hex.EncodeToString(b[:])
}

// layerPath is where commit id keeps its layer of format.
func (m *Manager) layerPath(id, format string) string {
	name := "disk.img"
	if format == "qcow2" {
		name = "disk.qcow2"
	}
	return filepath.Join(m.opt.CommitsDir, id, name)
}

// commitDir is the directory commit id owns: its layer (a disk commit's)
// and its state (a memory commit's, whose layer is its source's old disk).
func (m *Manager) commitDir(id string) string {
	return filepath.Join(m.opt.CommitsDir, id)
}

// commitsEnabled reports ErrNotImplemented when this daemon has nowhere to
// keep commits.
func (m *Manager) commitsEnabled() error {
	if m.opt.Layers == nil || m.opt.CommitsDir == "" {
		return fmt.Errorf("commits: this daemon has no disk layers configured: %w", api.ErrNotImplemented)
	}
	return nil
}

// Commit makes a commit of the stopped persistent VM hostname: its disk
// becomes a read-only layer that forks are made over, and the VM goes on
// over it as it was. Commits claiming one cache key take turns; a cache
// key another commit holds is ErrConflict, as is a VM that is not stopped
// or not persistent.
func (m *Manager) Commit(ctx context.Context, hostname string, req api.CommitVMRequest) (api.CommitVMResponse, error) {
	req.CacheKey = strings.TrimSpace(req.CacheKey)
	if err := checkCommitRequest(req); err != nil {
		return api.CommitVMResponse{}, err
	}
	if err := m.commitsEnabled(); err != nil {
		return api.CommitVMResponse{}, err
	}
	in, err := m.get(hostname)
	if err != nil {
		return api.CommitVMResponse{}, err
	}
	unlock, err := m.commits.lockKey(ctx, req.CacheKey)
	if err != nil {
		return api.CommitVMResponse{}, err
	}
	defer unlock()
	if req.Mode == api.CommitModeMemory {
		return m.commitMemory(ctx, in, req)
	}
	c, rec, err := m.claimCommit(in)
	if err != nil {
		return api.CommitVMResponse{}, err
	}
	commit, err := m.commitDisk(ctx, in, c, rec, req)
	if err != nil {
		m.unclaim(in, c)
		return api.CommitVMResponse{}, err
	}
	m.log.Info("vm committed", "vm", hostname, "commit", commit.ID, "format", commit.LayerFormat, "cache_key", commit.CacheKey)
	return api.CommitVMResponse{
		Hostname: hostname, CommitID: commit.ID, Status: api.CommitStatusCommitted,
		ParentStatus: api.StateStopped, Mode: commit.Mode,
		Tags: commit.Tags, Labels: commit.Labels, CacheKey: commit.CacheKey,
	}, nil
}

// claimCommit checks that in may be committed (stopped, persistent) and
// puts it in Committing, which nothing else may interrupt. It returns the
// claim and the VM's record.
func (m *Manager) claimCommit(in *instance) (*claim, store.VM, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	r, err := vmstate.Check(in.rec.Hostname, vmstate.Commit, in.stateLocked())
	if err != nil {
		return nil, store.VM{}, fmt.Errorf("%w (a commit needs a stopped persistent vm: shut it down first)", err)
	}
	if !in.rec.Persistent {
		return nil, store.VM{}, fmt.Errorf("commit vm %q: it is ephemeral (a commit needs a stopped persistent vm): %w", in.rec.Hostname, api.ErrConflict)
	}
	c := &claim{vm: in.rec.Hostname, op: vmstate.Commit, from: in.rec.State, via: r.Via, to: r.To}
	in.busy = c
	return c, in.rec, nil
}

// unclaim ends claim c of in, which failed: the VM is as it was.
func (m *Manager) unclaim(in *instance, c *claim) {
	in.mu.Lock()
	if in.busy == c {
		in.busy = nil
	}
	in.mu.Unlock()
}

// commitDisk records the commit, makes its layer, then records it ready
// together with the VM, which is no longer Committing. Any failure undoes
// what was done.
func (m *Manager) commitDisk(ctx context.Context, in *instance, c *claim, rec store.VM, req api.CommitVMRequest) (store.Commit, error) {
	format := diskFormat(rec)
	id := newCommitID()
	commit := store.Commit{
		ID: id, State: store.CommitWriting, Mode: api.CommitModeDisk, CreatedAt: time.Now().UTC(),
		Tags: req.Tags, Labels: req.Labels, CacheKey: req.CacheKey,
		Source: rec.Hostname, Group: rec.Group,
		Layer: m.layerPath(id, format), LayerFormat: format, SourceDisk: rec.Disk, SourceFormat: format,
		CPUs: rec.CPUs, RamBytes: rec.RamBytes, VMTags: withoutName(rec.Tags),
		Secrets: rec.Secrets, NoSecrets: rec.NoSecrets, Backend: m.backendName(rec),
		Template: rec.Template, // the layer's chain goes down to the template's
	}
	if format == "qcow2" {
		commit.Parent = rec.DiskBase // the new layer is over the old one
	}
	in.mu.Lock()
	if in.plan != nil && in.plan.Policy.Override != nil {
		o := *in.plan.Policy.Override
		commit.Network = &o
	}
	in.mu.Unlock()
	if err := m.opt.Store.CreateCommit(commit); err != nil {
		return store.Commit{}, err
	}
	undoRecord := func() error {
		return errors.Join(os.RemoveAll(m.commitDir(id)), m.opt.Store.DeleteCommit(id))
	}
	if err := m.opt.Layers.Freeze(ctx, rec.Disk, format, commit.Layer); err != nil {
		return store.Commit{}, errors.Join(fmt.Errorf("commit vm %q: %w", rec.Hostname, err), undoRecord())
	}

	commit.State = store.CommitReady
	in.mu.Lock()
	defer in.mu.Unlock()
	next := in.rec
	next.CommitID = id
	if format == "qcow2" {
		next.DiskBase = id
	}
	if err := m.opt.Store.FinishCommit(commit, next); err != nil {
		err = fmt.Errorf("commit vm %q: %w", rec.Hostname, err)
		return store.Commit{}, errors.Join(err, m.opt.Layers.Unfreeze(rec.Disk, format, commit.Layer), undoRecord())
	}
	in.rec = next
	if in.busy == c {
		in.busy = nil
	}
	return commit, nil
}

// withoutName drops the name= tag: a friendly name is one VM's.
func withoutName(tags []string) []string {
	var out []string
	for _, t := range tags {
		if !strings.HasPrefix(t, namePrefix) {
			out = append(out, t)
		}
	}
	return out
}

// CommitFilter selects commits in ListCommits: every tag given must be
// the commit's; the other fields match exactly when set.
type CommitFilter struct {
	Tags     []string
	CacheKey string
	Source   string
	Mode     string
}

// ListCommits returns the commits matching f, oldest first. Commits being
// written or deleted are not listed.
func (m *Manager) ListCommits(f CommitFilter) ([]api.CommitInfo, error) {
	commits, err := m.opt.Store.ListCommits()
	if err != nil {
		return nil, err
	}
	out := []api.CommitInfo{}
	for _, c := range commits {
		if c.State != store.CommitReady || !f.matches(c) {
			continue
		}
		out = append(out, api.CommitInfo{
			CommitID: c.ID, SourceHostname: c.Source, SourceHostGroup: c.Group, CreatedAt: c.CreatedAt,
			Mode: c.Mode, Tags: c.Tags, Labels: c.Labels, CacheKey: c.CacheKey,
		})
	}
	return out, nil
}

func (f CommitFilter) matches(c store.Commit) bool {
	for _, t := range f.Tags {
		if !slices.Contains(c.Tags, t) {
			return false
		}
	}
	return (f.CacheKey == "" || c.CacheKey == f.CacheKey) &&
		(f.Source == "" || c.Source == f.Source) &&
		(f.Mode == "" || c.Mode == f.Mode)
}

// DeleteCommit removes commit id and its layer. A commit in use (its
// source VM exists, or a VM forked from it, or a commit over its layer)
// is ErrConflict naming them.
func (m *Manager) DeleteCommit(ctx context.Context, id string) error {
	if err := api.CheckCommitID(id); err != nil {
		return err
	}
	m.commits.mu.Lock()
	defer m.commits.mu.Unlock()
	c, err := m.opt.Store.GetCommit(id)
	if err != nil {
		return err
	}
	if c.State == store.CommitWriting {
		return fmt.Errorf("commit %s is still being written: %w", id, api.ErrConflict)
	}
	users, err := m.commitUsers(c)
	if err != nil {
		return err
	}
	if len(users) > 0 {
		return fmt.Errorf("commit %s is in use by %s; delete them first: %w", id, strings.Join(users, ", "), api.ErrConflict)
	}
	c.State = store.CommitDeleting
	if err := m.opt.Store.PutCommit(c); err != nil {
		return err
	}
	if err := m.dropCommit(c); err != nil {
		return err
	}
	m.log.Info("commit deleted", "commit", id, "source", c.Source)
	return nil
}

// dropCommit removes the layer and directory of c, then its record.
func (m *Manager) dropCommit(c store.Commit) error {
	if err := errors.Join(m.opt.Layers.Drop(c.Layer), os.RemoveAll(m.commitDir(c.ID))); err != nil {
		return fmt.Errorf("remove layer of commit %s: %w", c.ID, err)
	}
	return m.opt.Store.DeleteCommit(c.ID)
}

// commitUsers names what keeps commit c: its source VM, the VMs forked
// from it or whose disk is over its layer, and the commits over its
// layer. VMs this daemon leaves alone (another backend's) count too.
func (m *Manager) commitUsers(c store.Commit) ([]string, error) {
	var users []string
	m.mu.Lock()
	recs := make([]store.VM, 0, len(m.vms)+len(m.leftAlone))
	for _, in := range m.vms {
		in.mu.Lock()
		recs = append(recs, in.rec)
		in.mu.Unlock()
	}
	recs = append(recs, m.leftAlone...)
	m.mu.Unlock()
	slices.SortFunc(recs, func(a, b store.VM) int { return strings.Compare(a.Hostname, b.Hostname) })
	for _, rec := range recs {
		switch {
		case rec.Hostname == c.Source:
			users = append(users, fmt.Sprintf("its source vm %q", rec.Hostname))
		case rec.ParentCommit == c.ID || rec.DiskBase == c.ID:
			users = append(users, fmt.Sprintf("vm %q", rec.Hostname))
		}
	}
	commits, err := m.opt.Store.ListCommits()
	if err != nil {
		return nil, err
	}
	for _, other := range commits {
		if other.Parent == c.ID {
			users = append(users, fmt.Sprintf("commit %s", other.ID))
		}
	}
	return users, nil
}

// recoverCommits settles the commits an earlier daemon left half done: one
// being written is undone (the source's disk put back), one being deleted
// is removed; a directory under CommitsDir that no record names is
// removed. It runs before the VMs are recovered, so a source VM's disk is
// whole again before anything looks at it. It returns the VMs a memory
// commit was capturing: their machines may have been left paused by the
// capture, and are to run again once attached.
func (m *Manager) recoverCommits() (map[string]bool, error) {
	captured := map[string]bool{}
	if m.commitsEnabled() != nil {
		return captured, nil
	}
	commits, err := m.opt.Store.ListCommits()
	if err != nil {
		return captured, err
	}
	var errs []error
	known := map[string]bool{}
	for _, c := range commits {
		known[c.ID] = true
		switch {
		case c.State == store.CommitWriting && c.Mode == api.CommitModeMemory:
			captured[c.Source] = true
			errs = append(errs, m.recoverMemoryCommit(c))
		case c.State == store.CommitWriting:
			m.log.Info("undoing a commit cut short by an earlier daemon", "commit", c.ID, "vm", c.Source)
			err := m.opt.Layers.Unfreeze(c.SourceDisk, c.SourceFormat, c.Layer)
			if err == nil {
				err = errors.Join(os.RemoveAll(m.commitDir(c.ID)), m.opt.Store.DeleteCommit(c.ID))
			}
			errs = append(errs, err)
		case c.State == store.CommitDeleting:
			m.log.Info("finishing the delete of a commit", "commit", c.ID)
			errs = append(errs, m.dropCommit(c))
		}
	}
	ents, err := os.ReadDir(m.opt.CommitsDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return captured, errors.Join(append(errs, err)...)
	}
	for _, e := range ents {
		if !known[e.Name()] && api.CheckCommitID(e.Name()) == nil && strings.HasPrefix(e.Name(), "cmt-") {
			m.log.Info("removing a commit directory no record names", "dir", e.Name())
			errs = append(errs, os.RemoveAll(filepath.Join(m.opt.CommitsDir, e.Name())))
		}
	}
	return captured, errors.Join(errs...)
}
