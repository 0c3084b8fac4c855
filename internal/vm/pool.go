package vm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/config"
	"github.com/openslicer/openslicer/internal/store"
	"github.com/openslicer/openslicer/internal/vmstate"
)

// Warm pools (issue 12): a host group's `warm: N` keeps N VMs booted, their
// agents up, for creates to take.
//
// A pool VM is made by the same path as a create's VM (allocate a record,
// start, wait for the agent), under a pool name "<group>-wK"
// (store.AllocatePool) that can never be a node's, and is then Pooled. It
// is not a node: it is kept in Manager.pooled, not in the table, so lists,
// lookups and guest operations never see it. It gets no first-boot data
// and no secrets while pooled.
//
// A create a pool VM can serve (poolServes) takes one: in one store
// transaction its record gets the next "<group>-N" name (store.Take), and
// keeps the pool name as its MachineName: its disk, run directory, console
// log, network plan and devices stay named after it, since its machine
// holds them open (machineName is the one place that maps a record to
// them). Then the guest gets its hostname (setGuestHostname), clock,
// secrets and first-boot data (userdata, SSH keys) as a booted VM does, and
// the create is answered as any other: a crash before the answer leaves an
// unanswered record, which the next start reclaims. The group's pool is
// refilled in the background.
//
// Fills never push the host past the daemon's memory budget (the guest
// memory of every VM with a machine, nodes and pool VMs together) nor a
// group's network capacity (a fill that finds no address waits). At daemon
// stop pool VMs are removed with everything they hold; after a crash the
// next start reclaims them (their records are never persistent), and fills
// again.

// poolBackoff bounds the wait after a failed fill, doubling from its first
// value to its last.
var poolBackoff = [2]time.Duration{2 * time.Second, time.Minute}

// pools is the warm pool state of a Manager; its maps are guarded by
// Manager.mu.
type pools struct {
	// kick wakes a group's filler: a pool VM was taken or left, or memory
	// was freed.
	kick map[string]chan struct{}
	wg   sync.WaitGroup // fillers
	once sync.Once
}

// machineName is the name of rec's host-side objects (console log, network
// plan and devices, state directory): its hostname, unless it was taken
// from a warm pool and keeps the name it was booted under.
func machineName(rec store.VM) string {
	if rec.MachineName != "" {
		return rec.MachineName
	}
	return rec.Hostname
}

// PoolStatus is one group's warm pool as GET /info shows it.
func (m *Manager) PoolStatus() []api.PoolInfo {
	out := []api.PoolInfo{}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, g := range m.opt.Config.HostGroups {
		if g.Warm == 0 {
			continue
		}
		p := api.PoolInfo{HostGroup: g.Name, Target: g.Warm}
		for _, in := range m.pooled {
			in.mu.Lock()
			if in.rec.Group == g.Name && !in.removed {
				if in.rec.State == vmstate.Pooled {
					p.Ready++
				} else {
					p.Filling++
				}
			}
			in.mu.Unlock()
		}
		out = append(out, p)
	}
	return out
}

// StartPools starts filling the warm pools of every group that has one. It
// is called once, after Recover and EnsureCount.
func (m *Manager) StartPools() {
	m.pool.once.Do(func() {
		for _, g := range m.opt.Config.HostGroups {
			if g.Warm <= 0 {
				continue
			}
			kick := make(chan struct{}, 1)
			m.mu.Lock()
			m.pool.kick[g.Name] = kick
			m.mu.Unlock()
			m.pool.wg.Add(1)
			go m.filler(g, kick)
		}
	})
}

// kickPools wakes every filler, without waiting.
func (m *Manager) kickPools() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, c := range m.pool.kick {
		select {
		case c <- struct{}{}:
		default:
		}
	}
}

// filler keeps g's pool full until the daemon stops: one fill at a time,
// each kicked by a change, backing off after a failure.
func (m *Manager) filler(g config.HostGroup, kick <-chan struct{}) {
	defer m.pool.wg.Done()
	log := m.log.With("group", g.Name, "pool", g.Warm)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-m.closing
		cancel()
	}()
	backoff := poolBackoff[0]
	for ctx.Err() == nil {
		need, why := m.poolNeeds(g)
		if need {
			err := m.fill(ctx, log, g)
			switch {
			case err == nil:
				backoff = poolBackoff[0]
				continue
			case ctx.Err() != nil:
				return
			}
			log.Warn("fill warm pool", "err", err, "retry_in", backoff)
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return
			}
			backoff = min(2*backoff, poolBackoff[1])
			continue
		}
		if why != "" {
			log.Debug("warm pool not filled", "why", why)
		}
		select {
		case <-kick:
		case <-ctx.Done():
			return
		}
	}
}

// poolNeeds reports whether g's pool should get one more VM now, and why
// not when it should not.
func (m *Manager) poolNeeds(g config.HostGroup) (bool, string) {
	m.mu.Lock()
	have, used := 0, int64(0)
	count := func(in *instance, pooled bool) {
		in.mu.Lock()
		defer in.mu.Unlock()
		if in.removed {
			return
		}
		if pooled && in.rec.Group == g.Name {
			have++
		}
		if pooled || in.machine != nil || in.rec.State == vmstate.Creating {
			used += in.rec.RamBytes
		}
	}
	for _, in := range m.pooled {
		count(in, true)
	}
	for _, in := range m.vms {
		count(in, false)
	}
	m.mu.Unlock()
	return poolDecision(g.Warm, have, used, g.RAMBytes(), m.opt.MemoryBudget)
}

// poolDecision is whether a pool that should hold target VMs and holds
// have (ready or filling) gets one more of ram bytes, when the daemon's
// VMs hold used bytes of guest memory and budget is the most they may
// (0: no budget); and why not.
func poolDecision(target, have int, used, ram, budget int64) (bool, string) {
	switch {
	case have >= target:
		return false, ""
	case budget > 0 && used+ram > budget:
		return false, fmt.Sprintf("memory budget: %d of %d bytes in use, a pool vm needs %d", used, budget, ram)
	}
	return true, ""
}

// fill boots one pool VM of g and puts it in the pool once its agent
// answers. Any failure unwinds it.
func (m *Manager) fill(ctx context.Context, log *slog.Logger, g config.HostGroup) error {
	ctx, abort := context.WithCancel(ctx)
	defer abort()
	var undo undoStack
	in, err := m.allocatePool(g, abort, &undo)
	if err != nil {
		return err
	}
	defer close(in.created)
	log = log.With("vm", in.rec.Hostname)
	// The same path as a create's: a snapshot group's pool VMs are
	// restored from its template.
	newDisk, restoreFrom, template, err := m.machineSource(ctx, g, g.VCPU, g.RAMBytes())
	if err != nil {
		return m.fail(ctx, log, &undo, err)
	}
	in.mu.Lock()
	in.rec.Template = template.ID
	in.mu.Unlock()
	if err := m.start(ctx, log, g, in, newDisk, restoreFrom, &undo); err != nil {
		return m.fail(ctx, log, &undo, err)
	}
	if err := m.identifyClone(ctx, in, template, 0); err != nil {
		return m.fail(ctx, log, &undo, err)
	}
	if err := m.wait(ctx, in, CreateOptions{Wait: WaitAgent}); err != nil {
		return m.fail(ctx, log, &undo, err)
	}
	m.warmUp(ctx, log, in)
	in.mu.Lock()
	err = in.applyLocked(vmstate.Pool)
	rec := in.rec
	in.mu.Unlock()
	if err == nil {
		err = m.opt.Store.Put(rec)
	}
	if err != nil {
		return m.fail(ctx, log, &undo, err)
	}
	undo.release()
	m.watch(in)
	log.Info("warm pool vm ready")
	return nil
}

// allocatePool writes the record of a new pool VM of g (state creating,
// never persistent, no secrets) and enters it in the pool, with its
// network planned.
func (m *Manager) allocatePool(g config.HostGroup, abort context.CancelFunc, undo *undoStack) (*instance, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	rec, err := m.opt.Store.AllocatePool(g.Name, func(k int, name string) store.VM {
		return store.VM{
			Hostname: name, Group: g.Name, Index: k, CPUs: g.VCPU, RamBytes: g.RAMBytes(), State: vmstate.Creating,
			Pool: true, NoSecrets: true, CreatedAt: time.Now().UTC().Truncate(time.Second),
			Disk: m.diskPath(name), RunDir: m.runDir(name), Backend: m.opt.Backend.Name(),
		}
	})
	if err != nil {
		return nil, err
	}
	undo.push(func(context.Context) error { return m.opt.Store.Delete(rec.Hostname) })
	in := &instance{rec: rec, created: make(chan struct{}), abort: abort, pool: true}
	if g.Network != nil {
		if err := m.assignPlanLocked(g, in, nil); err != nil {
			return nil, errors.Join(err, undo.run(context.Background()))
		}
		if err := m.opt.Store.Put(in.rec); err != nil {
			return nil, errors.Join(err, undo.run(context.Background()))
		}
	}
	m.pooled[rec.Hostname] = in
	undo.push(func(context.Context) error {
		m.mu.Lock()
		delete(m.pooled, rec.Hostname)
		m.mu.Unlock()
		return nil
	})
	return in, nil
}

// warmUp runs, once, what a take and a caller's first exec will run in a
// new pool VM: the identity route (renaming the guest to its own name)
// and an exec of true as the default user. A guest's first exec costs
// several times its later ones (under TCG, QEMU translates every guest
// code path the first time it runs, and keeps the translation), so this
// is paid while the VM waits in the pool instead of by the create. A
// failure is only logged.
func (m *Manager) warmUp(ctx context.Context, log *slog.Logger, in *instance) {
	in.mu.Lock()
	client, name := in.agent, in.rec.Hostname
	in.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := m.setGuestHostname(ctx, client, name); err != nil {
		log.Warn("warm up pool vm", "err", err)
		return
	}
	out, err := client.Exec(ctx, &api.ExecRequest{Command: "true"}, nil)
	if err != nil {
		log.Warn("warm up pool vm", "err", err)
		return
	}
	io.Copy(io.Discard, out)
	out.Close()
}

// drainPools stops the fillers (a fill under way unwinds) and removes
// every pool VM with its disk, run directory, network and record. It is
// called by Close.
func (m *Manager) drainPools(ctx context.Context) error {
	m.pool.wg.Wait()
	m.mu.Lock()
	insts := make([]*instance, 0, len(m.pooled))
	for _, in := range m.pooled {
		insts = append(insts, in)
	}
	m.mu.Unlock()
	return allAtOnce(insts, func(in *instance) error { return m.teardown(ctx, in) })
}

// DefaultMemoryBudgetPercent is the share of the host's memory the
// daemon's VMs may hold before warm pools stop filling, when the config
// sets no memory_budget.
const DefaultMemoryBudgetPercent = 80

// MemoryBudgetFor is the memory budget of a daemon on a host with hostMem
// bytes: the config's memory_budget, or DefaultMemoryBudgetPercent of the
// host's memory; 0 (no budget) when neither is known.
func MemoryBudgetFor(cfg *config.Config, hostMem int64) int64 {
	if b := cfg.MemoryBudgetBytes(); b > 0 {
		return b
	}
	return hostMem / 100 * DefaultMemoryBudgetPercent
}
