// Package vm is the core of the daemon: the host groups, the table of VMs
// and each VM's life from create to delete.
//
// A create allocates the name and writes the store record first, then
// clones the disk and boots the machine, pushing the undo of every step on a
// stack, so a failure at any point (including a wait timeout or a delete
// that arrives during boot) unwinds exactly what was done. Every VM has a
// watcher goroutine on its machine's exit; an ephemeral VM whose machine
// exits is reaped with its disk. Guest operations go through the VM's agent
// client, which the server streams back unchanged.
//
// States and which operation may run in which are vmstate's table; state.go
// applies it.
//
// Commits make a stopped VM's disk a read-only layer, and forks are new
// VMs whose disks are copy-on-write over one (commit.go, fork.go).
//
// Warm pools keep VMs booted outside the table for creates to take
// (pool.go, pool_take.go).
//
// Locking: Manager.mu guards the table; each instance's mu guards its state.
// Slow work (cloning, booting, waiting for the agent, every call into the
// hypervisor) runs with no lock held.
package vm

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/agent"
	"github.com/openslicer/openslicer/internal/config"
	"github.com/openslicer/openslicer/internal/hypervisor"
	"github.com/openslicer/openslicer/internal/network"
	"github.com/openslicer/openslicer/internal/store"
)

// BootImage is the set of files a VM boots from.
type BootImage struct {
	Kernel, Initrd, RootFS string
	// ImageID is the OCI image ID (config digest); "" for the built-in min.
	ImageID string
	// Env, WorkingDir and User are the OCI image config's exec defaults
	// (empty for min). The guest takes them from the image's base
	// (internal/agent/imageconfig), not from here: they are for the record.
	Env        []string
	WorkingDir string
	User       string
}

// Images resolves a config image name to boot files, preparing them if
// needed.
type Images interface {
	Resolve(ctx context.Context, name string) (BootImage, error)
}

// CloneFunc makes a VM's root disk at dst from the image's src, grown to
// size bytes, and returns its format ("raw" or "qcow2"), which the VM
// keeps: a disk's format is never guessed from its contents. A crash may
// leave dst+".tmp" (or dst itself, half made), which the manager removes
// with the VM.
type CloneFunc func(ctx context.Context, src, dst string, size int64) (format string, err error)

// Options are the dependencies of a Manager.
type Options struct {
	Config *config.Config
	// Backend boots the VMs this daemon creates (the config's
	// hypervisor).
	Backend hypervisor.Backend
	// Backends are further backends whose VMs this daemon can re-attach,
	// reclaim, relaunch and restore: each VM is handled by the backend its
	// record names. Backend is always one of them.
	Backends []hypervisor.Backend
	Store    *store.Store
	Images   Images
	Clone    CloneFunc
	// Network wires the VMs of groups with a network; it may be nil when
	// no group has one.
	Network Network
	// Secrets are synced into guests; nil means the daemon has no secret
	// store, and a create that names secrets is ErrNotImplemented.
	Secrets SecretSource
	// DisksDir holds <hostname>.img; RunDir holds one directory per VM for
	// its sockets and pidfile; LogDir holds <hostname>.txt console logs.
	DisksDir, RunDir, LogDir string
	// Accelerator names how guests run ("kvm" or "tcg"), for messages.
	Accelerator string
	// BootWatchdog bounds how long a booting guest may print nothing on
	// its console (a restored one: how long its agent may take to
	// answer) before its create fails with api.ErrBootFailed; zero
	// watches only for a machine that exits before its agent is ready.
	// See BootWatchdogFor.
	BootWatchdog time.Duration
	// Keys fetches the SSH keys of GitHub users (import_user, the config's
	// github_user); nil makes a create that needs them ErrNotImplemented.
	Keys KeySource
	// ShutdownTimeout bounds how long a graceful daemon stop waits for
	// guests to power off; zero means DefaultShutdownTimeout.
	ShutdownTimeout time.Duration
	// Layers makes commit layers and forks' disks over them, kept under
	// CommitsDir (commit.go); without them commits are ErrNotImplemented.
	Layers     Layers
	CommitsDir string
	// TemplatesDir keeps the host groups' snapshot templates
	// (template.go); without it (or Layers) snapshot groups boot cold.
	TemplatesDir string
	// MemoryBudget is the most guest memory the daemon's VMs (nodes and
	// warm pool VMs) may hold before the warm pools stop filling; zero
	// means no budget. Creates are never refused by it (pool.go).
	MemoryBudget int64
	Log          *slog.Logger
}

// Manager owns every VM of the daemon.
type Manager struct {
	opt      Options
	log      *slog.Logger
	groups   map[string]config.HostGroup
	backends hypervisor.Backends

	mu  sync.Mutex
	vms map[string]*instance
	// leftAlone are the records Recover found of VMs whose backend this
	// daemon does not have: not in the table, never touched, and their
	// network objects kept.
	leftAlone []store.VM
	wg        sync.WaitGroup // watcher goroutines
	// closing is closed when the daemon stops, releasing the watchers.
	closing   chan struct{}
	closeOnce sync.Once
	// commits orders commits, forks and commit deletes (commit.go).
	commits commitLocks
	// templates serialise the template builds of each group (template.go).
	templates templateLocks
	// pooled are the warm pool VMs, filling or ready, by pool name: not
	// nodes, so not in vms (pool.go). Guarded by mu.
	pooled map[string]*instance
	pool   pools
}

// instance is one VM known to the manager.
type instance struct {
	mu      sync.Mutex
	rec     store.VM
	machine hypervisor.Machine
	agent   *agent.Client
	// plan is the VM's network, nil when its group has none.
	plan *network.Plan
	// created is closed when the create that made this instance returns;
	// abort cancels that create (a delete during boot).
	created chan struct{}
	abort   context.CancelFunc
	// endLife ends the background work tied to the running machine.
	endLife context.CancelFunc
	// delivered is closed once the running machine's agent has been
	// handed its secrets and first-boot data (deliverBootData).
	delivered <-chan struct{}
	// boot is the watchdog of the machine's latest start.
	boot bootWatch
	// secretsMu makes pushes of the VM's secrets take turns.
	secretsMu sync.Mutex
	// tagsMu makes tag updates of the VM take turns (UpdateTags).
	tagsMu sync.Mutex
	// busy is the op under way with no lock held (state.go), nil when none.
	busy *claim
	// removed is set once teardown has begun, so it happens only once.
	removed bool
	// pool marks a warm pool VM not taken yet: it gets no first-boot
	// data until a create takes it (pool.go).
	pool      bool
	lastAgent time.Time
}

// New returns a Manager for the given dependencies.
func New(opt Options) *Manager {
	groups := map[string]config.HostGroup{}
	for _, g := range opt.Config.HostGroups {
		groups[g.Name] = g
	}
	return &Manager{
		opt: opt, log: opt.Log, groups: groups, vms: map[string]*instance{}, closing: make(chan struct{}),
		pooled: map[string]*instance{}, pool: pools{kick: map[string]chan struct{}{}},
		backends: hypervisor.NewBackends(append([]hypervisor.Backend{opt.Backend}, opt.Backends...)...),
	}
}

// backendName is the backend that runs the VM of rec: the one its record
// names; for a record from before records named one, its machine handle's,
// else this daemon's.
func (m *Manager) backendName(rec store.VM) string {
	if rec.Backend != "" {
		return rec.Backend
	}
	var h hypervisor.Handle
	if len(rec.Machine) > 0 && json.Unmarshal(rec.Machine, &h) == nil && h.Backend != "" {
		return h.Backend
	}
	return m.opt.Backend.Name()
}

// backendFor returns the backend that runs the VM of rec (backendName);
// one this daemon does not have wraps hypervisor.ErrUnknownBackend.
func (m *Manager) backendFor(rec store.VM) (hypervisor.Backend, error) {
	b, err := m.backends.Get(m.backendName(rec))
	if err != nil {
		return nil, fmt.Errorf("vm %q: %w", rec.Hostname, err)
	}
	return b, nil
}

// HostGroups returns the configured host groups.
func (m *Manager) HostGroups() []api.HostGroup {
	out := []api.HostGroup{}
	for _, g := range m.opt.Config.HostGroups {
		count := 0
		if g.Count != nil {
			count = *g.Count
		}
		out = append(out, api.HostGroup{
			Name: g.Name, Count: count, RamBytes: g.RAMBytes(), CPUs: g.VCPU,
			Arch: archName(), GPUCount: g.GPUCount,
		})
	}
	return out
}

// Filter selects VMs in List.
type Filter struct {
	Group     string
	Tag       string
	TagPrefix string
}

// List returns the VMs matching f, ordered by group and index. An unknown
// group is ErrNotFound.
func (m *Manager) List(f Filter) ([]api.Node, error) {
	if f.Group != "" {
		if _, ok := m.groups[f.Group]; !ok {
			return nil, fmt.Errorf("host group %q: %w", f.Group, api.ErrNotFound)
		}
	}
	if f.Tag != "" && f.TagPrefix != "" {
		return nil, fmt.Errorf("%w: tag and tag_prefix cannot both be set", api.ErrInvalid)
	}
	m.mu.Lock()
	insts := make([]*instance, 0, len(m.vms))
	for _, in := range m.vms {
		insts = append(insts, in)
	}
	m.mu.Unlock()

	// A group's VMs are listed in the order of their records' index, the
	// n of their name (config.HostGroup.Hostname).
	type entry struct {
		node  api.Node
		index int
	}
	var entries []entry
	for _, in := range insts {
		n, index := in.node(), in.index()
		if (f.Group == "" || n.HostGroup == f.Group) && matchTags(n.Tags, f.Tag, f.TagPrefix) {
			entries = append(entries, entry{n, index})
		}
	}
	sort.Slice(entries, func(i, j int) bool {
		a, b := entries[i], entries[j]
		if a.node.HostGroup != b.node.HostGroup {
			return a.node.HostGroup < b.node.HostGroup
		}
		if a.index != b.index {
			return a.index < b.index
		}
		return a.node.Hostname < b.node.Hostname
	})
	out := make([]api.Node, 0, len(entries))
	for _, e := range entries {
		out = append(out, e.node)
	}
	return out, nil
}

func matchTags(tags []string, exact, prefix string) bool {
	if exact == "" && prefix == "" {
		return true
	}
	for _, t := range tags {
		if (exact != "" && t == exact) || (prefix != "" && strings.HasPrefix(t, prefix)) {
			return true
		}
	}
	return false
}

// IsProtected reports whether hostname is a VM declared by a group's count.
func (m *Manager) IsProtected(hostname string) bool {
	in, err := m.get(hostname)
	if err != nil {
		return false
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.rec.Protected
}

// get returns the instance of hostname or ErrNotFound.
func (m *Manager) get(hostname string) (*instance, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	in, ok := m.vms[hostname]
	if !ok {
		return nil, fmt.Errorf("vm %q: %w", hostname, api.ErrNotFound)
	}
	return in, nil
}

// index is the n of the VM's name in its group.
func (in *instance) index() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.rec.Index
}

func (in *instance) node() api.Node {
	in.mu.Lock()
	defer in.mu.Unlock()
	return api.Node{
		Hostname: in.rec.Hostname, HostGroup: in.rec.Group, IP: bareIP(in.rec.IP),
		RamBytes: in.rec.RamBytes, CPUs: in.rec.CPUs, CreatedAt: in.rec.CreatedAt,
		LastAgentCall: in.lastAgent, Arch: archName(),
		Tags: append([]string(nil), in.rec.Tags...), Status: in.rec.State.Status(),
		Persistent: in.rec.Persistent, State: string(in.rec.State),
	}
}

func archName() string {
	if runtime.GOARCH == "amd64" {
		return "x86_64"
	}
	if runtime.GOARCH == "arm64" {
		return "aarch64"
	}
	return runtime.GOARCH
}

// tableAndPool returns the VMs of the table and of the warm pools; m.mu
// must be held.
func (m *Manager) tableAndPool() []*instance {
	out := make([]*instance, 0, len(m.vms)+len(m.pooled))
	for _, in := range m.vms {
		out = append(out, in)
	}
	for _, in := range m.pooled {
		out = append(out, in)
	}
	return out
}

func (m *Manager) diskPath(hostname string) string {
	return filepath.Join(m.opt.DisksDir, hostname+".img")
}

func (m *Manager) runDir(hostname string) string {
	return filepath.Join(m.opt.RunDir, hostname)
}

func (m *Manager) logPath(hostname string) string {
	return filepath.Join(m.opt.LogDir, hostname+".txt")
}
