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
	own   owner // whose objects this Host makes, and the only ones it removes by scanning
	nsDir string
	ns    netns.NsHandle
	nl    *netlink.Handle
	log   *slog.Logger
	// mu serialises group-wide setup (a bridge and its NAT table), which
	// concurrent creates in one group would otherwise race on.
	mu sync.Mutex
	// legacyOnce logs objects of earlier versions once, at the first
	// Reclaim.
	legacyOnce sync.Once
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
	if err := CheckInstance(opt.Instance); err != nil {
		return nil, err
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
	return &Host{own: owner{opt.Prefix, opt.Instance}, nsDir: opt.NetNSDir, ns: ns, nl: nl, log: opt.Log}, nil
}

// Close releases the Host's handles; what it set up stays.
func (h *Host) Close() error {
	h.nl.Close()
	return h.ns.Close()
}

// ownerOf is how p's objects are named: with this Host's instance id,
// or as before instance ids for a plan recorded then.
func (h *Host) ownerOf(p Plan) owner {
	if p.Naming == NamingLegacy {
		return owner{prefix: h.own.prefix}
	}
	return h.own
}

// netnsPath is where VM vm's namespace is mounted (isolated mode).
func (h *Host) netnsPath(o owner, vm string) string {
	return filepath.Join(h.nsDir, o.netnsName(vm))
}

// Setup wires plan p: it is idempotent, so recovery can apply a recorded
// plan again. A failed Setup may leave part of the VM's objects behind:
// call Teardown. Group objects (a bridge and its NAT table) stay for the
// group's other VMs. Slots must be unique among a group's live VMs: a
// device of the same name left by another of this Host's VMs is taken
// over; one of another daemon, or not made by a daemon, is an error.
func (h *Host) Setup(ctx context.Context, p Plan) (Attachment, error) {
	o := h.ownerOf(p)
	var err error
	switch p.Mode {
	case ModeBridge:
		err = h.setupBridge(ctx, o, p)
	case ModeIsolated:
		err = h.setupIsolated(ctx, o, p)
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
		a.NetNS = h.netnsPath(o, p.VM)
	}
	h.log.Debug("network set up", "vm", p.VM, "mode", p.Mode, "ip", p.Guest.Address)
	return a, nil
}

// Teardown removes every object of the VM of plan p: its devices in the
// host namespace (a veth takes its peer with it), its nftables table, and
// its namespace (the kernel then destroys the TAP and bridge inside, once
// the hypervisor has exited). Missing objects are no error. It does all of
// it even when ctx is done, so an aborted create can still be undone.
func (h *Host) Teardown(ctx context.Context, p Plan) error {
	o := h.ownerOf(p)
	var errs []error
	links, err := h.links()
	errs = append(errs, err)
	var doomed []netlink.Link
	for _, l := range links {
		if l.Attrs().Alias == o.vmAlias(p.VM) {
			doomed = append(doomed, l)
		}
	}
	errs = append(errs, h.deleteLinks(doomed))
	tables, err := h.tables()
	errs = append(errs, err)
	for _, t := range tables {
		if t == o.vmTable(p.VM) {
			errs = append(errs, h.deleteTables([]string{t}))
		}
	}
	errs = append(errs, deleteNetNS(h.netnsPath(o, p.VM)))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("tear down network of %s: %w", p.VM, err)
	}
	return nil
}

// Reclaim removes every object of this Host's instance whose VM keepVM
// rejects, and the bridge and NAT table of every group keepGroup rejects
// (a nil function keeps nothing). Objects of another instance (another
// daemon) are never touched, nor are objects without an instance id
// (made by an earlier version): the first Reclaim logs those it does not
// keep. It lists each kind of object once and deletes all tables in one
// transaction, so hundreds of leftovers go fast.
func (h *Host) Reclaim(ctx context.Context, keepVM, keepGroup func(string) bool) error {
	keep := func(obj object) bool {
		f := keepVM
		if obj.kind == "group" {
			f = keepGroup
		}
		return f != nil && f(obj.name)
	}
	var legacy []string
	classify := func(obj object, what string) (doomed bool) {
		switch {
		case obj.who == legacyName && !keep(obj):
			legacy = append(legacy, what)
		case obj.who == mine && !keep(obj):
			return true
		}
		return false
	}
	var errs []error
	links, err := h.links()
	errs = append(errs, err)
	var doomed []netlink.Link
	for _, l := range links {
		if classify(h.own.parseAlias(l.Attrs().Alias), "link "+l.Attrs().Name) {
			doomed = append(doomed, l)
		}
	}
	errs = append(errs, h.deleteLinks(doomed))
	if err := ctx.Err(); err != nil {
		return err
	}

	tables, err := h.tables()
	errs = append(errs, err)
	var gone []string
	for _, t := range tables {
		if classify(h.own.parseTable(t), "table "+t) {
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
		if classify(h.own.parseNetNS(e.Name()), "netns "+e.Name()) {
			errs = append(errs, deleteNetNS(filepath.Join(h.nsDir, e.Name())))
			nsGone++
		}
	}
	if nsGone+len(doomed)+len(gone) > 0 {
		h.log.Info("reclaimed network leftovers", "links", len(doomed), "tables", len(gone), "namespaces", nsGone)
	}
	if len(legacy) > 0 {
		h.legacyOnce.Do(func() {
			h.log.Warn("network objects without an instance id (made by an earlier version) are left alone: remove them by hand once no VM uses them",
				"objects", strings.Join(legacy, ", "))
		})
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
	if _, err := h.tables(); err != nil {
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
	names := map[int]string{}
	for _, l := range links {
		names[l.Attrs().Index] = l.Attrs().Name
	}
	out := make([]hostLink, len(links))
	for i, l := range links {
		a := l.Attrs()
		obj := h.own.parseAlias(a.Alias)
		out[i] = hostLink{Name: a.Name, Kind: l.Type(), Master: names[a.MasterIndex], Owner: obj.who, Instance: obj.instance}
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
