package vm

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/agent"
	"github.com/openslicer/openslicer/internal/config"
	"github.com/openslicer/openslicer/internal/network"
	"github.com/openslicer/openslicer/internal/store"
	"github.com/openslicer/openslicer/internal/vmstate"
)

// A fork makes a new VM, the child, in its commit's host group: it gets
// the next <group>-N name, a disk copy-on-write over the commit's layer
// (Layers.Overlay), and boots cold. Before it is answered (wait=agent), or
// in the background after (wait=none), the daemon waits for its agent and
// applies the fix-ups: the child must not keep its source's identity. Its
// record is marked Unfinished until then, and the next daemon reclaims a
// child found so; a child whose background finalisation fails is removed.

// ForkOptions are the query parameters of a fork.
type ForkOptions struct {
	// NoWait answers once the child's machine has started (wait=none),
	// finishing it in the background; otherwise the fork waits for its
	// agent and fix-ups (wait=agent, the default).
	NoWait bool
	// Timeout bounds the wait for the agent (zero: DefaultWaitTimeout).
	Timeout time.Duration
	// Answer, when set, sends the fork's answer, as CreateOptions.Answer
	// does a create's: commit records that the child was answered.
	Answer func(resp api.ForkVMResponse, commit func() error) error
}

// forkSpec is the child a fork makes, computed from its commit, the
// commit's host group and the request (planFork).
type forkSpec struct {
	CPUs      int
	RamBytes  int64
	Tags      []string
	Secrets   []string // none: all, unless NoSecrets
	NoSecrets bool
	// Network is the child's egress override (isolated groups): the
	// source's, with the request's lists in place of the ones it names.
	Network *api.CreateNodeNetworkPolicy
	Fixups  []string
	// GuestHostname is the name the guest keeps when the hostname fix-up
	// is off: its source's. "" gives it its own.
	GuestHostname string
	Persistent    bool
}

// planFork checks a fork request against its commit and group, and
// returns the child it makes. Errors are ErrInvalid.
func planFork(c store.Commit, g config.HostGroup, req api.ForkVMRequest) (forkSpec, error) {
	s := forkSpec{
		CPUs: min(c.CPUs, g.VCPU), RamBytes: min(c.RamBytes, g.RAMBytes()),
		Secrets: c.Secrets, NoSecrets: c.NoSecrets, Persistent: req.Persistent,
	}
	if s.CPUs <= 0 {
		s.CPUs = g.VCPU
	}
	if s.RamBytes <= 0 {
		s.RamBytes = g.RAMBytes()
	}
	var errs []error
	s.CPUs, s.RamBytes, errs = sizeWithin(g, "vcpu", req.VCPU, req.RamBytes, s.CPUs, s.RamBytes)

	switch req.TagMode {
	case "", api.TagModeAppend:
		s.Tags = appendNew(slices.Clone(c.VMTags), req.Tags...)
	case api.TagModeReplace:
		s.Tags = appendNew(nil, req.Tags...)
	default:
		errs = append(errs, fmt.Errorf("tag_mode %q: want %s or %s", req.TagMode, api.TagModeAppend, api.TagModeReplace))
	}
	if err := checkTags(s.Tags); err != nil {
		errs = append(errs, err)
	}

	if req.Secrets != nil {
		s.Secrets, s.NoSecrets = secretScope(*req.Secrets), len(*req.Secrets) == 0
	}

	net, err := forkNetwork(c, g, req.Network)
	if err != nil {
		errs = append(errs, err)
	}
	s.Network = net

	s.Fixups = slices.Clone(api.AllFixups)
	if req.Fixups != nil {
		s.Fixups = nil
		for _, f := range *req.Fixups {
			if !slices.Contains(api.AllFixups, f) {
				errs = append(errs, fmt.Errorf("fixup %q: want %s", f, strings.Join(api.AllFixups, ", ")))
				continue
			}
			s.Fixups = appendNew(s.Fixups, f)
		}
	}
	if !slices.Contains(s.Fixups, api.FixupHostname) {
		s.GuestHostname = c.Source
	}
	if len(errs) > 0 {
		return forkSpec{}, fmt.Errorf("%w: fork: %w", api.ErrInvalid, errors.Join(errs...))
	}
	return s, nil
}

// checkHotFork refuses a fork of memory commit c that cannot restore its
// state: the child has the source's size, and a network card when, and
// only when, its source had one (see hotcommit.go). Errors are ErrInvalid
// or ErrConflict.
func checkHotFork(c store.Commit, g config.HostGroup, req api.ForkVMRequest) error {
	var errs []error
	if req.VCPU != 0 && req.VCPU != c.CPUs {
		errs = append(errs, fmt.Errorf("vcpu %d: a fork of a memory commit has its source's %d", req.VCPU, c.CPUs))
	}
	if req.RamBytes != 0 && req.RamBytes != c.RamBytes {
		errs = append(errs, fmt.Errorf("ram_bytes %d: a fork of a memory commit has its source's %d", req.RamBytes, c.RamBytes))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: fork of memory commit %s: %w", api.ErrInvalid, c.ID, errors.Join(errs...))
	}
	switch {
	case g.VCPU < c.CPUs || g.RAMBytes() < c.RamBytes:
		return fmt.Errorf("fork of memory commit %s: host group %q is now smaller than its source (%d vcpu, %d bytes): %w", c.ID, g.Name, c.CPUs, c.RamBytes, api.ErrConflict)
	case (g.Network != nil) != c.HasNetwork:
		return fmt.Errorf("fork of memory commit %s: host group %q %s now, and the captured machine %s: %w", c.ID, g.Name,
			hasNetwork(g.Network != nil), hasNetwork(c.HasNetwork), api.ErrConflict)
	}
	return nil
}

// hasNetwork says whether something has a network, in words.
func hasNetwork(b bool) string {
	if b {
		return "has a network"
	}
	return "has no network"
}

// forkNetwork is the child's egress override: the source's, with each
// list the request names (an empty one clears it) in its place. Naming
// any list needs an isolated host group.
func forkNetwork(c store.Commit, g config.HostGroup, req *api.ForkVMNetworkPolicy) (*api.CreateNodeNetworkPolicy, error) {
	var out *api.CreateNodeNetworkPolicy
	if c.Network != nil {
		o := api.CreateNodeNetworkPolicy{Allow: slices.Clone(c.Network.Allow), Drop: slices.Clone(c.Network.Drop)}
		out = &o
	}
	if req == nil || req.Allow == nil && req.Drop == nil {
		return out, nil
	}
	if g.Network == nil || g.Network.Mode != network.ModeIsolated {
		mode := "no network"
		if g.Network != nil {
			mode = firstNonEmpty(g.Network.Mode, network.ModeBridge) + " mode"
		}
		return nil, fmt.Errorf("network: per-fork egress overrides need an isolated host group; %q has %s (bridge children inherit)", g.Name, mode)
	}
	if out == nil {
		out = &api.CreateNodeNetworkPolicy{}
	}
	if req.Allow != nil {
		out.Allow = append([]string{}, *req.Allow...)
	}
	if req.Drop != nil {
		out.Drop = append([]string{}, *req.Drop...)
	}
	return out, nil
}

// appendNew appends each of add to list unless it is there already.
func appendNew(list []string, add ...string) []string {
	for _, a := range add {
		if !slices.Contains(list, a) {
			list = append(list, a)
		}
	}
	return list
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// Fork makes a new VM from commit id (see the comment at the top of this
// file). The commit's group must still be configured.
func (m *Manager) Fork(ctx context.Context, id string, req api.ForkVMRequest, opt ForkOptions) (api.ForkVMResponse, error) {
	if err := api.CheckCommitID(id); err != nil {
		return api.ForkVMResponse{}, err
	}
	if opt.Timeout < 0 {
		return api.ForkVMResponse{}, fmt.Errorf("%w: timeout %s must not be negative", api.ErrInvalid, opt.Timeout)
	}
	if err := m.commitsEnabled(); err != nil {
		return api.ForkVMResponse{}, err
	}
	m.commits.mu.RLock()
	held := true
	release := func() {
		if held {
			held = false
			m.commits.mu.RUnlock()
		}
	}
	defer release()
	c, g, spec, err := m.forkPlan(id, req)
	if err != nil {
		return api.ForkVMResponse{}, err
	}

	// A child answered before it is finished lives on after the request.
	if opt.NoWait {
		ctx = context.WithoutCancel(ctx)
	}
	ctx, abort := context.WithCancel(ctx)
	var undo undoStack
	in, err := m.allocateWith(g, spec.Tags, spec.Network, abort, &undo, func(index int, hostname string) store.VM {
		return store.VM{
			Hostname: hostname, Group: g.Name, Index: index, CPUs: spec.CPUs, RamBytes: spec.RamBytes,
			Tags: spec.Tags, Persistent: spec.Persistent, State: vmstate.Creating, Unanswered: opt.Answer != nil,
			Secrets: spec.Secrets, NoSecrets: spec.NoSecrets, CreatedAt: time.Now().UTC().Truncate(time.Second),
			Disk: m.diskPath(hostname), RunDir: m.runDir(hostname), Backend: firstNonEmpty(c.Backend, m.opt.Backend.Name()),
			ParentCommit: c.ID, DiskBase: c.ID, GuestHostname: spec.GuestHostname, Unfinished: true,
		}
	})
	release() // the child is in the table: the commit cannot be deleted now
	if err != nil {
		abort()
		return api.ForkVMResponse{}, err
	}
	background := false
	defer func() {
		if !background {
			abort()
			close(in.created)
		}
	}()
	log := m.log.With("vm", in.rec.Hostname, "group", g.Name, "commit", c.ID)

	overlay := func(ctx context.Context, _ BootImage, _ int64, dst string) (string, error) {
		return m.opt.Layers.Overlay(ctx, c.Layer, c.LayerFormat, dst)
	}
	begin := time.Now()
	if err := m.start(ctx, log, g, in, overlay, c.StateDir, &undo); err != nil {
		return api.ForkVMResponse{}, m.fail(ctx, log, &undo, err)
	}
	log.Debug("fork's machine started", "took", time.Since(begin).Round(time.Millisecond))
	if !opt.NoWait {
		if err := m.finishFork(ctx, in, c, spec.Fixups, opt.Timeout); err != nil {
			return api.ForkVMResponse{}, m.fail(ctx, log, &undo, err)
		}
	}
	resp := m.forkResponse(in, c, !opt.NoWait)
	if opt.Answer != nil {
		if err := opt.Answer(resp, func() error { return m.markAnswered(in) }); err != nil {
			err = fmt.Errorf("vm %q: the fork could not be answered: %w", resp.Hostname, err)
			return api.ForkVMResponse{}, m.fail(ctx, log, &undo, err)
		}
	}
	if opt.NoWait {
		background = true
		go func() {
			defer close(in.created)
			defer abort()
			if err := m.finishFork(ctx, in, c, spec.Fixups, opt.Timeout); err != nil {
				log.Warn("fork could not be finished: removing the child", "err", err)
				m.fail(ctx, log, &undo, err)
				return
			}
			undo.release()
			m.watch(in)
			log.Info("vm forked", "persistent", spec.Persistent, "wait", "none")
		}()
		return resp, nil
	}
	undo.release()
	m.watch(in)
	log.Info("vm forked", "persistent", spec.Persistent, "wait", "agent")
	return resp, nil
}

// forkPlan looks commit id up and plans its child (planFork), checking the
// secrets the child is granted and its network override.
func (m *Manager) forkPlan(id string, req api.ForkVMRequest) (store.Commit, config.HostGroup, forkSpec, error) {
	c, err := m.opt.Store.GetCommit(id)
	if err != nil {
		return c, config.HostGroup{}, forkSpec{}, err
	}
	switch c.State {
	case store.CommitReady:
	case store.CommitWriting:
		return c, config.HostGroup{}, forkSpec{}, fmt.Errorf("commit %s is still being written: %w", id, api.ErrConflict)
	default:
		return c, config.HostGroup{}, forkSpec{}, fmt.Errorf("commit %s is being deleted: %w", id, api.ErrNotFound)
	}
	g, ok := m.groups[c.Group]
	if !ok {
		return c, g, forkSpec{}, fmt.Errorf("commit %s: its host group %q is no longer in the config: %w", id, c.Group, api.ErrConflict)
	}
	spec, err := planFork(c, g, req)
	if err != nil {
		return c, g, spec, err
	}
	if c.Mode == api.CommitModeMemory {
		if err := checkHotFork(c, g, req); err != nil {
			return c, g, spec, err
		}
		spec.CPUs, spec.RamBytes = c.CPUs, c.RamBytes
	}
	if err := m.checkSecrets(spec.Secrets); err != nil {
		return c, g, spec, err
	}
	if err := checkNetwork(g, spec.Network); err != nil {
		return c, g, spec, err
	}
	if err := checkStorage(g); err != nil {
		return c, g, spec, err
	}
	return c, g, spec, nil
}

// finishFork waits for the child's agent (and its secrets), applies the
// fix-ups, and records the child finished. A hot fork's child (of a
// memory commit) did not boot: it is first given a fresh identity
// (freshIdentity: its hostname, a new machine-id and RNG entropy,
// whatever the fix-ups say, so that no two children share them); the
// fix-ups that remain are the files of the guest's own tools.
func (m *Manager) finishFork(ctx context.Context, in *instance, c store.Commit, fixups []string, timeout time.Duration) error {
	begin := time.Now()
	if err := m.waitAgent(ctx, in, timeout); err != nil {
		return err
	}
	agentTook, t := time.Since(begin), time.Now()
	if c.Mode == api.CommitModeMemory {
		if err := m.freshIdentity(ctx, in); err != nil {
			return err
		}
		fixups = slices.DeleteFunc(slices.Clone(fixups), func(f string) bool {
			return f == api.FixupHostname || f == api.FixupMachineID
		})
	}
	identityTook, t := time.Since(t), time.Now()
	if err := m.applyFixups(ctx, in, c.Source, fixups); err != nil {
		return err
	}
	fixupsTook := time.Since(t)
	in.mu.Lock()
	in.rec.Unfinished = false
	rec := in.rec
	in.mu.Unlock()
	m.log.Debug("fork finished", "vm", rec.Hostname, "agent", agentTook.Round(time.Millisecond),
		"identity", identityTook.Round(time.Millisecond), "fixups", fixupsTook.Round(time.Millisecond))
	return m.opt.Store.Put(rec)
}

func (m *Manager) forkResponse(in *instance, c store.Commit, running bool) api.ForkVMResponse {
	in.mu.Lock()
	resp := api.ForkVMResponse{
		Hostname: in.rec.Hostname, SourceHostname: c.Source, CommitID: c.ID, Status: api.ForkStatusForked,
		ChildStatus: api.ChildStatusStarting, Mode: c.Mode, Persistent: in.rec.Persistent,
	}
	in.mu.Unlock()
	if running {
		resp.ChildStatus = api.ChildStatusRunning
	}
	if src, err := m.get(c.Source); err == nil {
		resp.ParentStatus = src.node().State
	}
	return resp
}

// fixupTimeout bounds the run of a child's fix-ups (ssh-keygen included).
const fixupTimeout = 2 * time.Minute

// applyFixups applies the fix-ups of a fork in its guest: a new machine
// id through the agent's identity route (PUT /v1/identity, no program of
// the guest's needed), the rest as root through the agent's exec, one
// shell script (fixupScript): they edit files of the guest's own tools.
// The hostname itself comes from the kernel command line at boot.
func (m *Manager) applyFixups(ctx context.Context, in *instance, source string, fixups []string) error {
	in.mu.Lock()
	host, client := in.rec.Hostname, in.agent
	in.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, fixupTimeout)
	defer cancel()
	if slices.Contains(fixups, api.FixupMachineID) {
		if err := client.SetIdentity(ctx, agent.Identity{MachineID: newMachineID()}); err != nil {
			return fmt.Errorf("vm %q: fix-up machine-id: %w", host, err)
		}
	}
	if slices.Contains(fixups, api.FixupSSHHostKeys) && !hasSSHHostKeys(ctx, client) {
		fixups = slices.DeleteFunc(slices.Clone(fixups), func(f string) bool { return f == api.FixupSSHHostKeys })
	}
	script := fixupScript(fixups, source, host)
	if script == "" {
		return nil
	}
	root := uint32(0)
	res, err := client.ExecBuffered(ctx, &api.ExecRequest{Command: script, Shell: "/bin/sh", UID: &root, GID: &root})
	if err != nil {
		return fmt.Errorf("vm %q: fix-ups %s: %w", host, strings.Join(fixups, ", "), err)
	}
	if res.ExitCode != 0 || res.Error != "" {
		return fmt.Errorf("vm %q: fix-ups %s failed (exit %d): %s", host, strings.Join(fixups, ", "), res.ExitCode,
			firstNonEmpty(strings.TrimSpace(res.Error), strings.TrimSpace(res.Stderr), "no output"))
	}
	return nil
}

// hasSSHHostKeys reports whether the guest may have SSH host keys to
// renew: true unless a listing of /etc/ssh shows none (or no /etc/ssh),
// which spares most forks the fix-up's exec.
func hasSSHHostKeys(ctx context.Context, client *agent.Client) bool {
	entries, err := client.ReadDir(ctx, "/etc/ssh")
	if errors.Is(err, api.ErrNotFound) {
		return false
	}
	if err != nil {
		return true
	}
	return slices.ContainsFunc(entries, func(e api.FSInfo) bool { return isSSHHostKey(e.Name) })
}

// isSSHHostKey reports whether name is an SSH host key's file name, as
// ssh-keygen -A makes them (ssh_host_<type>_key).
func isSSHHostKey(name string) bool {
	return strings.HasPrefix(name, "ssh_host_") && strings.HasSuffix(name, "_key")
}

// newMachineID is a fresh systemd machine ID: 128 random bits in hex.
func newMachineID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// fixupScript is the shell script that applies fixups to a child named
// child, forked from source; "" when there is nothing to run. Hostnames
// are <group>-N, so none needs quoting beyond single quotes.
//
//   - hostname: the kernel command line names the child, and the agent
//     sets it and writes /etc/hostname at boot; here /etc/hosts entries
//     naming the source are made to name the child.
//   - machine-id: not here; applyFixups sends the new ID through the
//     agent's identity route, which writes /etc/machine-id (and a real
//     /var/lib/dbus/machine-id).
//   - ssh-host-keys: when the disk has SSH host keys, they are removed
//     and new ones made (ssh-keygen -A).
func fixupScript(fixups []string, source, child string) string {
	var b strings.Builder
	for _, f := range fixups {
		switch f {
		case api.FixupHostname:
			fmt.Fprintf(&b, `if [ -f /etc/hosts ] && grep -qw '%[1]s' /etc/hosts; then
  awk -v old='%[1]s' -v new='%[2]s' '{ for (i = 2; i <= NF; i++) if ($i == old) $i = new; print }' /etc/hosts > /etc/.hosts.fork
  cat /etc/.hosts.fork > /etc/hosts
  rm -f /etc/.hosts.fork
fi
`, source, child)
		case api.FixupSSHHostKeys:
			b.WriteString(`if ls /etc/ssh/ssh_host_*_key >/dev/null 2>&1; then
  rm -f /etc/ssh/ssh_host_*
  ssh-keygen -A
fi
`)
		}
	}
	if b.Len() == 0 {
		return ""
	}
	return "set -e\n" + b.String() + "sync\n"
}
