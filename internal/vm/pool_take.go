package vm

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/agent"
	"github.com/openslicer/openslicer/internal/config"
	"github.com/openslicer/openslicer/internal/store"
	"github.com/openslicer/openslicer/internal/vmstate"
)

// Taking a VM from a warm pool (see pool.go): the create's side.

// poolServes reports whether a pool VM of g can serve a create asking for
// req with the effective size cpus and ram: one with the group's size, no
// network override (a pool VM's network is planned at fill) and no GPU.
// API creates only: the config's count VMs are created cold at start.
func poolServes(g config.HostGroup, req api.CreateNodeRequest, cpus int, ram int64, protected bool) bool {
	return g.Warm > 0 && !protected && cpus == g.VCPU && ram == g.RAMBytes() && req.Network == nil && req.GPUCount == 0
}

// createFromPool serves a create from g's pool when a VM is ready there
// and poolServes says it can; ok is false when the create must boot one
// instead. Once a VM is taken, its failure is the create's: it is removed
// and the error returned.
func (m *Manager) createFromPool(ctx context.Context, g config.HostGroup, req api.CreateNodeRequest, opt CreateOptions, fb agent.FirstBoot) (resp api.CreateNodeResponse, ok bool, err error) {
	start := time.Now()
	ctx, abort := context.WithCancel(ctx)
	defer abort()
	in, pool, err := m.take(g, req, fb, opt.Answer != nil, abort)
	if err != nil || in == nil {
		return api.CreateNodeResponse{}, in != nil, err
	}
	defer close(in.created)
	defer m.kickPools()
	log := m.log.With("vm", in.rec.Hostname, "group", g.Name, "pool_vm", pool)
	fail := func(err error) (api.CreateNodeResponse, bool, error) {
		if terr := m.teardown(ctx, in); terr != nil {
			log.Error("remove vm taken from the pool", "err", terr)
			err = errors.Join(err, fmt.Errorf("undo: %w", terr))
		}
		return api.CreateNodeResponse{}, true, err
	}
	if err := m.becomeNode(ctx, in, pool, opt); err != nil {
		return fail(err)
	}
	resp = in.createResponse()
	if opt.Answer != nil {
		if err := opt.Answer(resp, func() error { return m.markAnswered(in) }); err != nil {
			return fail(fmt.Errorf("vm %q: the create could not be answered: %w", resp.Hostname, err))
		}
	}
	log.Info("vm created from the warm pool", "persistent", req.Persistent, "wait", opt.Wait, "took", time.Since(start))
	return resp, true, nil
}

// take moves a ready pool VM of g into the table as the group's next node,
// with the request's tags, persistence, first-boot data and secrets
// recorded: one store transaction renames its record. It returns nil when
// no VM is ready, and the VM's pool name.
func (m *Manager) take(g config.HostGroup, req api.CreateNodeRequest, fb agent.FirstBoot, unanswered bool, abort context.CancelFunc) (*instance, string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var ready []*instance
	for _, in := range m.pooled {
		in.mu.Lock()
		if in.rec.Group == g.Name && in.rec.State == vmstate.Pooled && !in.removed && in.busy == nil {
			ready = append(ready, in)
		}
		in.mu.Unlock()
	}
	if len(ready) == 0 {
		return nil, "", nil
	}
	if err := m.checkNamesLocked("", req.Tags); err != nil {
		return nil, "", err
	}
	// The oldest first: it has waited longest.
	sort.Slice(ready, func(i, j int) bool { return ready[i].rec.Index < ready[j].rec.Index }) // K of <group>-wK
	in := ready[0]
	in.mu.Lock()
	defer in.mu.Unlock()
	pool := in.rec.Hostname
	if _, err := vmstate.Check(pool, vmstate.Take, in.stateLocked()); err != nil {
		return nil, "", err
	}
	rec, err := m.opt.Store.Take(pool, func(index int, hostname string, pooled store.VM) store.VM {
		pooled.Hostname, pooled.Index, pooled.MachineName, pooled.Pool = hostname, index, pool, false
		pooled.State, pooled.Unanswered, pooled.CreatedAt = vmstate.Running, unanswered, time.Now().UTC().Truncate(time.Second)
		pooled.Tags, pooled.Persistent, pooled.Userdata, pooled.SSHKeys = req.Tags, req.Persistent, fb.Userdata, fb.SSHKeys
		pooled.Secrets, pooled.NoSecrets = secretScope(req.Secrets), false
		return pooled
	})
	if err != nil {
		return nil, "", err
	}
	in.rec, in.pool = rec, false
	in.created, in.abort = make(chan struct{}), abort
	delete(m.pooled, pool)
	m.vms[rec.Hostname] = in
	return in, pool, nil
}

// becomeNode gives a VM just taken from the pool what a booted VM gets
// from its create: its hostname, the host's clock, its secrets and then
// its first-boot data, and waits as the create asked (userdata).
func (m *Manager) becomeNode(ctx context.Context, in *instance, pool string, opt CreateOptions) error {
	timeout := opt.Timeout
	if timeout == 0 {
		timeout = DefaultWaitTimeout
	}
	start := time.Now()
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	in.mu.Lock()
	client, host, fb := in.agent, in.rec.Hostname, agent.FirstBoot{Userdata: in.rec.Userdata, SSHKeys: in.rec.SSHKeys}
	in.mu.Unlock()
	log := m.log.With("vm", host)
	// The hostname and the secrets at once, then the first-boot data:
	// userdata finds both. Without userdata (SSH keys at most) all three
	// at once.
	var hostErr, secErr, fbErr error
	var hostTook, secTook, fbTook time.Duration
	firstBoot := func() {
		t := time.Now()
		fbErr = client.FirstBoot(tctx, fb)
		fbTook = time.Since(t)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.Now()
		hostErr = m.setGuestHostname(tctx, client, host)
		hostTook = time.Since(t)
	}()
	if !hasUserdata(fb.Userdata) {
		wg.Add(1)
		go func() { defer wg.Done(); firstBoot() }()
	}
	t := time.Now()
	syncClock(tctx, log, client)
	secErr = m.pushSecrets(tctx, in, client)
	secTook = time.Since(t)
	wg.Wait()
	err := errors.Join(hostErr, secErr, fbErr)
	if err == nil && hasUserdata(fb.Userdata) {
		firstBoot()
		err = fbErr
	}
	log.Debug("warm pool vm given its identity", "hostname", hostTook, "clock_secrets", secTook, "firstboot", fbTook)
	switch {
	case err != nil && ctx.Err() != nil:
		return fmt.Errorf("vm %q: create aborted while taking it from the warm pool: %w", host, ctx.Err())
	case err != nil && tctx.Err() != nil:
		return fmt.Errorf("vm %q: warm pool vm not ready within %s: %w", host, timeout, api.ErrTimeout)
	case err != nil:
		return fmt.Errorf("vm %q: take from the warm pool: %w", host, err)
	case opt.Wait == WaitUserdata:
		return m.waitUserdata(ctx, in, max(timeout-time.Since(start), time.Millisecond))
	}
	return nil
}

// setGuestHostname renames a pool VM's guest to its node name through
// the agent's identity route: the kernel's hostname, /etc/hostname, and
// the /etc/hosts entries naming the old one. A relaunch boots with the
// node name on its command line anyway.
func (m *Manager) setGuestHostname(ctx context.Context, client *agent.Client, name string) error {
	if err := client.SetIdentity(ctx, agent.Identity{Hostname: name}); err != nil {
		return fmt.Errorf("set hostname: %w", err)
	}
	return nil
}

// hasUserdata reports whether a userdata script is anything to run (as
// the agent decides).
func hasUserdata(script string) bool { return strings.TrimSpace(script) != "" }
