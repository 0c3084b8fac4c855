package vm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/config"
	"github.com/openslicer/openslicer/internal/network"
)

// Network is the host side of VM networking the manager needs;
// *network.Host implements it. It is declared here so that the manager's
// tests run with a fake, without root.
type Network interface {
	// Setup wires a VM's plan on the host (idempotently) and says where
	// its NIC is.
	Setup(ctx context.Context, p network.Plan) (network.Attachment, error)
	// Teardown removes every device, namespace and rule of the VM of a
	// plan (the plan says how they are named).
	Teardown(ctx context.Context, p network.Plan) error
	// Reclaim removes this daemon's own objects (by its instance id; never
	// another daemon's) of every VM keepVM rejects and of every group
	// keepGroup rejects.
	Reclaim(ctx context.Context, keepVM, keepGroup func(string) bool) error
}

// planPath is where a VM's network plan is recorded, next to its disk: it
// lives as long as the VM, so a relaunch, a restore or the next daemon
// applies the same addresses again.
func (m *Manager) planPath(hostname string) string {
	return filepath.Join(m.opt.DisksDir, hostname+".net.json")
}

// checkNetwork checks a create's network override against its group
// (ErrInvalid), before anything is allocated.
func checkNetwork(g config.HostGroup, override *api.CreateNodeNetworkPolicy) error {
	if override == nil {
		return nil
	}
	_, err := network.PlanFor(g, g.Hostname(1), 0, override)
	return err
}

// assignPlanLocked plans the network of in, a VM of group g, in the lowest
// slot no other live VM of the group holds, and records the guest address.
// The caller holds m.mu, which makes the slot choice atomic; in may or may
// not be in the table yet.
func (m *Manager) assignPlanLocked(g config.HostGroup, in *instance, override *api.CreateNodeNetworkPolicy) error {
	var used []int
	for _, other := range m.tableAndPool() {
		if other == in {
			continue
		}
		other.mu.Lock()
		if other.plan != nil && other.rec.Group == g.Name {
			used = append(used, other.plan.Slot)
		}
		other.mu.Unlock()
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	plan, err := network.PlanFor(g, machineName(in.rec), network.FreeSlot(used), override)
	if err != nil {
		return fmt.Errorf("plan network of %s: %w", in.rec.Hostname, err)
	}
	in.plan, in.rec.IP = &plan, plan.Guest.Address.String()
	return nil
}

// ensurePlan gives in a network plan when its group has a network and it
// has none yet (a VM created before its group had one), or drops the plan
// of a group that no longer has a network. It returns the plan to apply.
func (m *Manager) ensurePlan(g config.HostGroup, in *instance) (*network.Plan, error) {
	in.mu.Lock()
	plan := in.plan
	if g.Network == nil && plan != nil {
		in.plan, in.rec.IP, plan = nil, "", nil
	}
	in.mu.Unlock()
	if g.Network == nil || plan != nil {
		return plan, nil
	}
	m.mu.Lock()
	err := m.assignPlanLocked(g, in, nil)
	m.mu.Unlock()
	if err != nil {
		return nil, err
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.plan, nil
}

// writePlan records p for hostname.
func (m *Manager) writePlan(hostname string, p network.Plan) error {
	data, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	tmp := m.planPath(hostname) + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("record network plan: %w", err)
	}
	if err := os.Rename(tmp, m.planPath(hostname)); err != nil {
		return fmt.Errorf("record network plan: %w", err)
	}
	return nil
}

// readPlan returns the recorded plan of hostname, or nil when it has none.
func (m *Manager) readPlan(hostname string) (*network.Plan, error) {
	data, err := os.ReadFile(m.planPath(hostname))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var p network.Plan
	if err := json.Unmarshal(data, &p); err != nil {
		return nil, fmt.Errorf("read network plan of %s: %w", hostname, err)
	}
	return &p, nil
}

// setupNetwork wires plan p and returns where the machine's NIC is. The
// teardown is pushed on undo before the error is looked at: a failed
// Setup may have made part of the VM's objects.
func (m *Manager) setupNetwork(ctx context.Context, p network.Plan, undo *undoStack) (network.Attachment, error) {
	if m.opt.Network == nil {
		return network.Attachment{}, fmt.Errorf("host group %q has a network, but this daemon has no network host", p.Group)
	}
	att, err := m.opt.Network.Setup(ctx, p)
	undo.push(func(ctx context.Context) error { return m.opt.Network.Teardown(ctx, p) })
	if err != nil {
		return network.Attachment{}, err
	}
	return att, nil
}

// networkDown removes the network objects of a VM whose machine is gone;
// its plan stays, so that its address is kept for a relaunch. A plan
// recorded before instance ids is moved to them here: its old objects are
// gone, and the next start names the new ones with this daemon's id.
func (m *Manager) networkDown(ctx context.Context, in *instance) error {
	in.mu.Lock()
	plan, host := in.plan, machineName(in.rec)
	in.mu.Unlock()
	if plan == nil || m.opt.Network == nil {
		return nil
	}
	if err := m.opt.Network.Teardown(context.WithoutCancel(ctx), *plan); err != nil {
		return err
	}
	if plan.Naming == network.NamingInstance {
		return nil
	}
	renamed := *plan
	renamed.Naming = network.NamingInstance
	in.mu.Lock()
	if in.plan == plan {
		in.plan = &renamed
	}
	in.mu.Unlock()
	return m.writePlan(host, renamed)
}

// reclaimNetwork removes this daemon's network objects that no live
// machine uses, and the bridge objects of its groups that are no longer
// bridged or no longer in the config. The network host touches only
// objects that carry this daemon's instance id, so another daemon's are
// safe whatever its groups are called. A daemon without a network host
// has nothing to reclaim with.
func (m *Manager) reclaimNetwork(ctx context.Context, live map[string]bool) error {
	if m.opt.Network == nil {
		return nil
	}
	keepVM := func(vm string) bool { return live[vm] }
	keepGroup := func(name string) bool {
		g, ok := m.groups[name]
		return ok && g.Network != nil && (g.Network.Mode == "" || g.Network.Mode == network.ModeBridge)
	}
	return m.opt.Network.Reclaim(ctx, keepVM, keepGroup)
}

// bareIP is the address of a CIDR as lists show it.
func bareIP(s string) string {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Addr().String()
	}
	return s
}

// networkDescription is the network part of GET /vm/{h}.
func (m *Manager) networkDescription(in *instance) api.VMNetworkDescription {
	in.mu.Lock()
	plan, group := in.plan, in.rec.Group
	in.mu.Unlock()
	if plan != nil {
		return plan.Description()
	}
	d := api.VMNetworkDescription{
		HostGroup: api.VMNetworkPolicy{Allow: []string{}, Drop: []string{}},
		Effective: api.VMNetworkPolicy{Allow: []string{}, Drop: []string{}},
	}
	if g := m.groups[group]; g.Network != nil {
		d.Mode = g.Network.Mode
	}
	return d
}
