package config

import (
	"net/netip"
	"strings"
)

// Warm pools (extension): a host group's `warm: N` and the daemon's
// `memory_budget`.

// PoolNameDigits is how many digits of K a warm pool VM's name
// "<group>-wK" (store.PoolName) must leave room for, as hostnames leave
// four for N. A pool name can never be a VM's hostname ("<group>-N", N
// digits only) nor another group's pool name.
const PoolNameDigits = 4

// MemoryBudgetBytes is memory_budget in bytes; 0 when unset. Validate has
// checked it parses.
func (c Config) MemoryBudgetBytes() int64 {
	if c.MemoryBudget == "" {
		return 0
	}
	n, _ := ParseSize(c.MemoryBudget)
	return n
}

func checkMemoryBudget(p *problems, s string) {
	if s == "" {
		return
	}
	n, err := ParseSize(s)
	switch {
	case err != nil:
		p.add("config.memory_budget", "%v", err)
	case n < minRAMBytes:
		p.add("config.memory_budget", "%q is below the minimum of %s", s, FormatSize(minRAMBytes))
	}
}

// checkWarm checks warm against the group's limits: not negative, a
// storage the daemon can create, names that fit (isolated groups name
// network devices after them), and no more VMs than the group's fixed
// addresses hold together with its count.
func checkWarm(p *problems, path string, g HostGroup) {
	switch {
	case g.Warm < 0:
		p.add(path+".warm", "must be 0 or more, got %d", g.Warm)
		return
	case g.Warm == 0:
		return
	}
	if g.Storage == "devmapper" || g.Storage == "zfs" {
		p.add(path+".warm", "warm pools need storage: image (this daemon cannot create %s VMs)", g.Storage)
	}
	longest := len(g.Name) + 2 + PoolNameDigits
	if longest > 63 {
		p.add(path+".warm", "%q is too long for a warm pool: pool VM names %s-wK must fit in 63 characters with room for %d digits of K", g.Name, g.Name, PoolNameDigits)
	}
	if n := g.Network; n != nil && n.Mode == "isolated" && longest > maxIfName {
		p.add(path+".warm", "%q is too long for a warm pool in isolated mode: pool VM names %s-wK must be at most %d characters", g.Name, g.Name, maxIfName)
	}
	if capacity, ok := addressCapacity(g); ok && g.VMCount()+g.Warm > capacity {
		p.add(path+".warm", "count %d and warm %d need %d addresses, but the group's network has %d", g.VMCount(), g.Warm, g.VMCount()+g.Warm, capacity)
	}
}

// addressCapacity is how many VMs the group's network can address, when
// the config fixes it (network.addresses, or a bridge range); ok is false
// otherwise.
func addressCapacity(g HostGroup) (int, bool) {
	n := g.Network
	if n == nil || (n.Mode != "" && n.Mode != "bridge") {
		return 0, false
	}
	if len(n.Addresses) > 0 {
		return len(n.Addresses), true
	}
	if n.Range == "" {
		return 0, false
	}
	lo, hi, _ := strings.Cut(n.Range, "-")
	a, aerr := netip.ParseAddr(strings.TrimSpace(lo))
	b, berr := netip.ParseAddr(strings.TrimSpace(hi))
	if aerr != nil || berr != nil || !a.Is4() || !b.Is4() || b.Less(a) {
		return 0, false // reported by checkBridgeRange
	}
	x, y := a.As4(), b.As4()
	size := int(uint32(y[0])<<24|uint32(y[1])<<16|uint32(y[2])<<8|uint32(y[3])) -
		int(uint32(x[0])<<24|uint32(x[1])<<16|uint32(x[2])<<8|uint32(x[3])) + 1
	if gw, err := netip.ParsePrefix(n.Gateway); err == nil && !gw.Addr().Less(a) && !b.Less(gw.Addr()) {
		size-- // the planner steps over the gateway
	}
	return size, true
}
