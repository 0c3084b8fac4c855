package network

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/openslicer/openslicer/internal/config"
)

// Host applies plans to the machine. It is safe for concurrent use.
type Host struct {
	prefix string
	nsDir  string
	ns     netns.NsHandle
	nl     *netlink.Handle
	log    *slog.Logger
	// mu serialises group-wide setup (a bridge and its NAT table), which
	// concurrent creates in one group would otherwise race on.
	mu sync.Mutex
}

var prefixRE = regexp.MustCompile(`^[a-z0-9]+$`)

// New opens the host namespace. It creates nothing.
func New(opt Options) (*Host, error) {
	if opt.Prefix == "" {
		opt.Prefix = DefaultPrefix
	}
	if !prefixRE.MatchString(opt.Prefix) {
		return nil, fmt.Errorf("network prefix %q: want lowercase letters and digits", opt.Prefix)
	}
	if opt.NetNSDir == "" {
		opt.NetNSDir = DefaultNetNSDir
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	var ns netns.NsHandle
	var err error
	if opt.NetNS == "" {
		ns, err = netns.Get()
	} else {
		ns, err = netns.GetFromPath(opt.NetNS)
	}
	if err != nil {
		return nil, fmt.Errorf("open host network namespace: %w", err)
	}
	nl, err := netlink.NewHandleAt(ns)
	if err != nil {
		ns.Close()
		return nil, fmt.Errorf("open netlink: %w", err)
	}
	return &Host{prefix: opt.Prefix, nsDir: opt.NetNSDir, ns: ns, nl: nl, log: opt.Log}, nil
}

// Close releases the Host's handles; what it set up stays.
func (h *Host) Close() error {
	h.nl.Close()
	return h.ns.Close()
}

// NetNSPath is where VM vm's namespace is mounted (isolated mode).
func (h *Host) NetNSPath(vm string) string {
	return filepath.Join(h.nsDir, netnsName(h.prefix, vm))
}

// Setup wires plan p: it is idempotent, so recovery can apply a recorded
// plan again. A failed Setup may leave part of the VM's objects behind:
// call Teardown. Group objects (a bridge and its NAT table) stay for the
// group's other VMs. Slots must be unique among a group's live VMs: a
// device of the same name left by another VM is taken over.
func (h *Host) Setup(ctx context.Context, p Plan) (Attachment, error) {
	var err error
	switch p.Mode {
	case ModeBridge:
		err = h.setupBridge(ctx, p)
	case ModeIsolated:
		err = h.setupIsolated(ctx, p)
	default:
		err = fmt.Errorf("network mode %q is not supported", p.Mode)
	}
	if err == nil {
		err = h.enableForwarding()
	}
	if err != nil {
		return Attachment{}, fmt.Errorf("set up %s network of %s: %w", p.Mode, p.VM, err)
	}
	a := Attachment{TAP: p.TAP, MAC: p.MAC}
	if p.Mode == ModeIsolated {
		a.NetNS = h.NetNSPath(p.VM)
	}
	h.log.Debug("network set up", "vm", p.VM, "mode", p.Mode, "ip", p.Guest.Address)
	return a, nil
}

// Teardown removes every object of VM vm: its devices in the host
// namespace (a veth takes its peer with it), its nftables table, and its
// namespace (the kernel then destroys the TAP and bridge inside, once the
// hypervisor has exited). Missing objects are no error. It does all of it
// even when ctx is done, so an aborted create can still be undone.
func (h *Host) Teardown(ctx context.Context, vm string) error {
	var errs []error
	links, err := h.links()
	errs = append(errs, err)
	var mine []netlink.Link
	for _, l := range links {
		if l.Attrs().Alias == vmAlias(h.prefix, vm) {
			mine = append(mine, l)
		}
	}
	errs = append(errs, h.deleteLinks(mine))
	tables, err := h.ownedTables(vmTable(h.prefix, vm))
	errs = append(errs, err)
	for _, t := range tables {
		if t == vmTable(h.prefix, vm) {
			errs = append(errs, h.deleteTables([]string{t}))
		}
	}
	errs = append(errs, deleteNetNS(h.NetNSPath(vm)))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("tear down network of %s: %w", vm, err)
	}
	return nil
}

// Reclaim removes every object this Host's prefix owns whose VM keepVM
// rejects, and the bridge and NAT table of every group keepGroup rejects
// (a nil function keeps nothing). It lists each kind of object once and
// deletes all tables in one transaction, so hundreds of leftovers go fast.
func (h *Host) Reclaim(ctx context.Context, keepVM, keepGroup func(string) bool) error {
	keep := func(f func(string) bool, name string) bool { return f != nil && f(name) }
	var errs []error
	links, err := h.links()
	errs = append(errs, err)
	var doomed []netlink.Link
	for _, l := range links {
		alias := l.Attrs().Alias
		vm, isVM := strings.CutPrefix(alias, h.prefix+"/vm/")
		group, isGroup := strings.CutPrefix(alias, h.prefix+"/group/")
		if isVM && !keep(keepVM, vm) || isGroup && !keep(keepGroup, group) {
			doomed = append(doomed, l)
		}
	}
	errs = append(errs, h.deleteLinks(doomed))
	if err := ctx.Err(); err != nil {
		return err
	}

	tables, err := h.ownedTables(h.prefix + "-")
	errs = append(errs, err)
	var gone []string
	for _, t := range tables {
		vm, isVM := strings.CutPrefix(t, h.prefix+"-vm-")
		group, isGroup := strings.CutPrefix(t, h.prefix+"-group-")
		if isVM && !keep(keepVM, vm) || isGroup && !keep(keepGroup, group) {
			gone = append(gone, t)
		}
	}
	errs = append(errs, h.deleteTables(gone))

	// What is left in a namespace (its TAP and bridge) goes with it, in
	// the background.
	entries, err := os.ReadDir(h.nsDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("list network namespaces: %w", err))
	}
	var nsGone int
	for _, e := range entries {
		vm, ok := strings.CutPrefix(e.Name(), h.prefix+"-")
		if ok && !keep(keepVM, vm) {
			errs = append(errs, deleteNetNS(filepath.Join(h.nsDir, e.Name())))
			nsGone++
		}
	}
	if nsGone+len(doomed)+len(gone) > 0 {
		h.log.Info("reclaimed network leftovers", "links", len(doomed), "tables", len(gone), "namespaces", nsGone)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("reclaim network leftovers: %w", err)
	}
	return nil
}

// TeardownGroup removes group's bridge (if this Host created it) and its
// NAT table. The group's VMs should be torn down first.
func (h *Host) TeardownGroup(ctx context.Context, group string) error {
	keepAll := func(string) bool { return true }
	return h.Reclaim(ctx, keepAll, func(g string) bool { return g != group })
}

// CheckHost reports why this host cannot run the networks of groups, in
// one error naming each fix, before anything is created: not root, no
// /dev/net/tun, no nftables, a group network already in use on the host,
// a bridge that exists with another address. Groups without a network
// need nothing, so a config without networks always passes.
func (h *Host) CheckHost(ctx context.Context, groups []config.HostGroup) error {
	var networked []config.HostGroup
	for _, g := range groups {
		if g.Network != nil {
			networked = append(networked, g)
		}
	}
	if len(networked) == 0 {
		return nil
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("host group %q has a network, which needs root: run slicer up as root (sudo), or remove network from the host groups", networked[0].Name)
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		return fmt.Errorf("networking needs /dev/net/tun (%v): load the tun module (modprobe tun)", err)
	}
	if _, err := h.ownedTables(h.prefix); err != nil {
		return fmt.Errorf("networking needs nftables (%v): load nf_tables (modprobe nf_tables) or use a kernel with it", err)
	}
	links, err := h.hostLinks()
	if err != nil {
		return err
	}
	return checkGroups(networked, links)
}

// enableForwarding turns on IPv4 forwarding in the host namespace.
func (h *Host) enableForwarding() error {
	return inNS(h.ns, func() error {
		const path = "/proc/sys/net/ipv4/ip_forward"
		b, err := os.ReadFile(path)
		if err == nil && strings.TrimSpace(string(b)) == "1" {
			return nil
		}
		if err := os.WriteFile(path, []byte("1\n"), 0o644); err != nil {
			return fmt.Errorf("enable IPv4 forwarding: %w", err)
		}
		h.log.Info("enabled IPv4 forwarding (net.ipv4.ip_forward=1)")
		return nil
	})
}

// hostLinks lists the host's links with their addresses.
func (h *Host) hostLinks() ([]hostLink, error) {
	links, err := h.links()
	if err != nil {
		return nil, err
	}
	addrs, err := retryDump(func() ([]netlink.Addr, error) { return h.nl.AddrList(nil, netlink.FAMILY_ALL) })
	if err != nil {
		return nil, fmt.Errorf("list host addresses: %w", err)
	}
	byIndex := map[int]*hostLink{}
	out := make([]hostLink, len(links))
	for i, l := range links {
		a := l.Attrs()
		out[i] = hostLink{Name: a.Name, Kind: l.Type(), Ours: h.owns(a.Alias)}
		byIndex[a.Index] = &out[i]
	}
	for _, a := range addrs {
		if l := byIndex[a.LinkIndex]; l != nil && a.IPNet != nil {
			if p, ok := prefixOf(a); ok {
				l.Addrs = append(l.Addrs, p)
			}
		}
	}
	return out, nil
}

// owns reports whether a link alias is one of this Host's.
func (h *Host) owns(alias string) bool {
	return strings.HasPrefix(alias, h.prefix+"/vm/") || strings.HasPrefix(alias, h.prefix+"/group/")
}
