package network

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// setupBridge ensures the group's bridge and NAT table, then the VM's TAP
// on the bridge.
func (h *Host) setupBridge(ctx context.Context, o owner, p Plan) error {
	h.mu.Lock()
	br, err := h.ensureBridge(o, p)
	if err == nil {
		err = h.applyTable(ruleset(o, p))
	}
	h.mu.Unlock()
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	_, err = h.ensureTAP(h.ns, h.nl, p.TAP, o.vmAlias(p.VM), br)
	return err
}

// ensureBridge makes the group's bridge, with the gateway address, up. A
// bridge that exists is used as it is if it holds the gateway or no IPv4
// address at all, unless another daemon made it.
func (h *Host) ensureBridge(o owner, p Plan) (netlink.Link, error) {
	br, err := h.nl.LinkByName(p.Bridge)
	if notFound(err) {
		err = h.nl.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: p.Bridge}})
		if err != nil {
			return nil, fmt.Errorf("create bridge %s: %w", p.Bridge, err)
		}
		if br, err = h.nl.LinkByName(p.Bridge); err == nil {
			err = h.setAliasOrDelete(h.nl, br, o.groupAlias(p.Group))
		}
	}
	if err != nil {
		return nil, fmt.Errorf("bridge %s: %w", p.Bridge, err)
	}
	if br.Type() != "bridge" {
		return nil, fmt.Errorf("%s is a %s device, not a bridge", p.Bridge, br.Type())
	}
	if obj := h.own.parseAlias(br.Attrs().Alias); obj.who == otherOwner {
		return nil, fmt.Errorf("bridge %s belongs to another slicer daemon (instance %s, %s %s): give host group %q its own network.bridge and network.gateway",
			p.Bridge, obj.instance, obj.kind, obj.name, p.Group)
	}
	gw := p.Guest.GatewayPrefix()
	addrs, err := h.nl.AddrList(br, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("list addresses of %s: %w", p.Bridge, err)
	}
	has := false
	for _, a := range addrs {
		q, _ := prefixOf(a)
		has = has || q == gw
	}
	switch {
	case !has && len(addrs) > 0:
		return nil, fmt.Errorf("bridge %s has address %s, not the gateway %s", p.Bridge, addrs[0].IPNet, gw)
	case !has:
		if err := h.addressFree(gw, br); err != nil {
			return nil, err
		}
		if err := h.nl.AddrAdd(br, &netlink.Addr{IPNet: ipNet(gw)}); err != nil {
			return nil, fmt.Errorf("add %s to %s: %w", gw, p.Bridge, err)
		}
	}
	if err := h.nl.LinkSetUp(br); err != nil {
		return nil, fmt.Errorf("bring up %s: %w", p.Bridge, err)
	}
	return br, nil
}

// setupIsolated ensures the VM's namespace with its bridge and TAP, the
// VM's nftables table, then the veth pair: its end in the namespace on the
// bridge, the host end with the gateway.
func (h *Host) setupIsolated(ctx context.Context, o owner, p Plan) error {
	path := h.netnsPath(o, p.VM)
	if err := ensureNetNS(path); err != nil {
		return err
	}
	vmns, err := netns.GetFromPath(path)
	if err != nil {
		return fmt.Errorf("open network namespace %s: %w", path, err)
	}
	defer vmns.Close()
	vnl, err := netlink.NewHandleAt(vmns)
	if err != nil {
		return fmt.Errorf("open netlink in %s: %w", path, err)
	}
	defer vnl.Close()

	alias := o.vmAlias(p.VM)
	lo, err := vnl.LinkByName("lo")
	if err == nil {
		err = vnl.LinkSetUp(lo)
	}
	if err != nil {
		return fmt.Errorf("bring up loopback in %s: %w", path, err)
	}
	br, err := vnl.LinkByName(nsBridge)
	if notFound(err) {
		err = vnl.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: nsBridge}})
		if err == nil {
			br, err = vnl.LinkByName(nsBridge)
		}
	}
	if err == nil {
		err = up(vnl, br, alias, nil)
	}
	if err != nil {
		return fmt.Errorf("bridge %s in %s: %w", nsBridge, path, err)
	}
	if _, err := h.ensureTAP(vmns, vnl, p.TAP, alias, br); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// The rules go in before the veth that links the VM to the host.
	if err := h.applyTable(ruleset(o, p)); err != nil {
		return err
	}
	return h.ensureVeth(vmns, vnl, o, p, br)
}

// ensureVeth ensures the veth pair: the host end (o.hostVeth) with the
// gateway address, the other end in the VM's namespace on its bridge.
func (h *Host) ensureVeth(vmns netns.NsHandle, vnl *netlink.Handle, o owner, p Plan, br netlink.Link) error {
	alias, name := o.vmAlias(p.VM), o.hostVeth(p.VM)
	host, err := h.claim(h.nl, name, alias)
	if err != nil {
		return err
	}
	if host != nil {
		if _, err := vnl.LinkByName(nsVeth); err != nil {
			// Half a pair: start again.
			if err := h.deleteLink(host); err != nil {
				return err
			}
			host = nil
		}
	}
	// Checked before the veth is made, so a clash leaves nothing behind.
	if err := h.addressFree(p.Guest.GatewayPrefix(), host); err != nil {
		return err
	}
	if host == nil {
		if old, err := vnl.LinkByName(nsVeth); err == nil {
			if err := vnl.LinkDel(old); err != nil {
				return fmt.Errorf("delete stale %s in the VM namespace: %w", nsVeth, err)
			}
		}
		veth := &netlink.Veth{
			LinkAttrs: netlink.LinkAttrs{Name: name},
			PeerName:  nsVeth, PeerNamespace: netlink.NsFd(vmns),
		}
		if err := h.nl.LinkAdd(veth); err != nil {
			return fmt.Errorf("create veth pair %s: %w", name, err)
		}
		if host, err = h.nl.LinkByName(name); err == nil {
			err = h.setAliasOrDelete(h.nl, host, alias)
		}
		if err != nil {
			return fmt.Errorf("veth %s: %w", name, err)
		}
	}
	if err := h.setOnlyAddress(host, p.Guest.GatewayPrefix()); err != nil {
		return err
	}
	if err := up(h.nl, host, alias, nil); err != nil {
		return fmt.Errorf("veth %s: %w", name, err)
	}
	peer, err := vnl.LinkByName(nsVeth)
	if err == nil {
		err = up(vnl, peer, alias, br)
	}
	if err != nil {
		return fmt.Errorf("veth end %s in the VM namespace: %w", nsVeth, err)
	}
	return nil
}

// ensureTAP ensures a persistent TAP named name in namespace ns (nl is a
// handle there), owned by this process's user so the hypervisor can open it
// by name, enslaved to master and up.
func (h *Host) ensureTAP(ns netns.NsHandle, nl *netlink.Handle, name, alias string, master netlink.Link) (netlink.Link, error) {
	tap, err := h.claim(nl, name, alias)
	if err != nil {
		return nil, err
	}
	if tap == nil {
		// A TAP is made through /dev/net/tun, in the namespace of the
		// thread that opens it.
		err = inNS(ns, func() error {
			return netlink.LinkAdd(&netlink.Tuntap{
				LinkAttrs: netlink.LinkAttrs{Name: name},
				Mode:      netlink.TUNTAP_MODE_TAP,
				Flags:     netlink.TUNTAP_NO_PI | netlink.TUNTAP_VNET_HDR,
				Owner:     uint32(os.Geteuid()), Group: uint32(os.Getegid()),
			})
		})
		if err == nil {
			tap, err = nl.LinkByName(name)
		}
		if err == nil {
			err = h.setAliasOrDelete(nl, tap, alias)
		}
		if err != nil {
			return nil, fmt.Errorf("create TAP %s: %w", name, err)
		}
	}
	if err := up(nl, tap, alias, master); err != nil {
		return nil, fmt.Errorf("TAP %s: %w", name, err)
	}
	return tap, nil
}

// claim returns the link called name if it is this VM's (alias), nil if
// there is none. A link of another of this Host's VMs is a leftover and is
// deleted; a link the Host does not own (another daemon's, an earlier
// version's, or not made by a daemon) is an error, and is left alone.
func (h *Host) claim(nl *netlink.Handle, name, alias string) (netlink.Link, error) {
	l, err := nl.LinkByName(name)
	switch {
	case notFound(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("look up %s: %w", name, err)
	case l.Attrs().Alias == alias:
		return l, nil
	}
	obj := h.own.parseAlias(l.Attrs().Alias)
	if obj.who == mine {
		if err := nl.LinkDel(l); err != nil && !notFound(err) {
			return nil, fmt.Errorf("delete leftover %s (%s): %w", name, l.Attrs().Alias, err)
		}
		return nil, nil
	}
	return nil, fmt.Errorf("device %s exists and is %s: remove it (ip link del %s) or give the host group another network", name, describeOwner(obj), name)
}

// describeOwner says whose an object is, for an error message.
func describeOwner(obj object) string {
	switch obj.who {
	case mine:
		return fmt.Sprintf("this daemon's (%s %s)", obj.kind, obj.name)
	case otherOwner:
		return fmt.Sprintf("another slicer daemon's (instance %s, %s %s)", obj.instance, obj.kind, obj.name)
	case legacyName:
		return fmt.Sprintf("%s (%s %s, with no instance id)", obj.who, obj.kind, obj.name)
	default:
		return "not made by this daemon"
	}
}

// addressFree fails when an IPv4 address of the network of p is on a
// host link other than self (which may be nil): two daemons (or a daemon and something
// else) would answer for the same network, and one of them would lose
// its traffic.
func (h *Host) addressFree(p netip.Prefix, self netlink.Link) error {
	selfIndex := 0
	if self != nil {
		selfIndex = self.Attrs().Index
	}
	addrs, err := retryDump(func() ([]netlink.Addr, error) { return h.nl.AddrList(nil, netlink.FAMILY_V4) })
	if err != nil {
		return fmt.Errorf("list host addresses: %w", err)
	}
	for _, a := range addrs {
		q, ok := prefixOf(a)
		if !ok || a.LinkIndex == selfIndex || !q.Masked().Overlaps(p.Masked()) {
			continue
		}
		name, who := fmt.Sprint("link ", a.LinkIndex), object{}
		if l, err := h.nl.LinkByIndex(a.LinkIndex); err == nil {
			name, who = l.Attrs().Name, h.own.parseAlias(l.Attrs().Alias)
		}
		return fmt.Errorf("network %s is in use: %s is on %s, which is %s: give the host group another network.range or network.gateway",
			p.Masked(), q, name, describeOwner(who))
	}
	return nil
}

// setAliasOrDelete gives a link just made its alias, which is how it is
// found again (the kernel ignores an alias given at creation). A link
// that cannot take it is deleted, so that nothing is left unattributed.
func (h *Host) setAliasOrDelete(nl *netlink.Handle, l netlink.Link, alias string) error {
	err := nl.LinkSetAlias(l, alias)
	if err != nil {
		return errors.Join(fmt.Errorf("set alias: %w", err), deleteLinkWith(nl, l))
	}
	l.Attrs().Alias = alias
	return nil
}

// up sets the alias, the master (if any) and the up flag of l.
func up(nl *netlink.Handle, l netlink.Link, alias string, master netlink.Link) error {
	if l.Attrs().Alias != alias {
		if err := nl.LinkSetAlias(l, alias); err != nil {
			return fmt.Errorf("set alias: %w", err)
		}
	}
	if master != nil && l.Attrs().MasterIndex != master.Attrs().Index {
		if err := nl.LinkSetMaster(l, master); err != nil {
			return fmt.Errorf("attach to %s: %w", master.Attrs().Name, err)
		}
	}
	if err := nl.LinkSetUp(l); err != nil {
		return fmt.Errorf("bring up: %w", err)
	}
	return nil
}

// setOnlyAddress makes p the only IPv4 address of l.
func (h *Host) setOnlyAddress(l netlink.Link, p netip.Prefix) error {
	addrs, err := h.nl.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("list addresses of %s: %w", l.Attrs().Name, err)
	}
	for _, a := range addrs {
		if q, _ := prefixOf(a); q != p {
			if err := h.nl.AddrDel(l, &a); err != nil {
				return fmt.Errorf("remove %s from %s: %w", a.IPNet, l.Attrs().Name, err)
			}
		}
	}
	if err := h.nl.AddrReplace(l, &netlink.Addr{IPNet: ipNet(p)}); err != nil {
		return fmt.Errorf("add %s to %s: %w", p, l.Attrs().Name, err)
	}
	return nil
}

// links lists the host's links.
func (h *Host) links() ([]netlink.Link, error) {
	links, err := retryDump(h.nl.LinkList)
	if err != nil {
		return nil, fmt.Errorf("list host links: %w", err)
	}
	return links, nil
}

// deleteLink deletes l from the host namespace; one already gone is no
// error.
func (h *Host) deleteLink(l netlink.Link) error {
	return deleteLinkWith(h.nl, l)
}

func deleteLinkWith(nl *netlink.Handle, l netlink.Link) error {
	if err := nl.LinkDel(l); err != nil && !notFound(err) {
		return fmt.Errorf("delete %s: %w", l.Attrs().Name, err)
	}
	return nil
}

// deleteWorkers bounds concurrent link deletions. Each deletion waits for
// the kernel to quiesce (tens of milliseconds on a small VM), and those
// waits overlap: hundreds of links go several times faster in parallel.
const deleteWorkers = 16

// deleteLinks deletes links from the host namespace, in parallel, each
// worker on its own netlink socket.
func (h *Host) deleteLinks(links []netlink.Link) error {
	if len(links) <= 1 {
		var errs []error
		for _, l := range links {
			errs = append(errs, h.deleteLink(l))
		}
		return errors.Join(errs...)
	}
	work := make(chan netlink.Link)
	errc := make(chan error, len(links))
	var wg sync.WaitGroup
	for range min(deleteWorkers, len(links)) {
		wg.Go(func() {
			nl, err := netlink.NewHandleAt(h.ns)
			if err != nil {
				nl = h.nl // shared, and so serial, but still correct
			} else {
				defer nl.Close()
			}
			for l := range work {
				errc <- deleteLinkWith(nl, l)
			}
		})
	}
	for _, l := range links {
		work <- l
	}
	close(work)
	wg.Wait()
	close(errc)
	var errs []error
	for err := range errc {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// retryDump runs a netlink dump again while the kernel reports it was
// interrupted by a concurrent change.
func retryDump[T any](dump func() ([]T, error)) ([]T, error) {
	for range 4 {
		out, err := dump()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return out, err
		}
	}
	return dump()
}

func notFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ENODEV)
}

func prefixOf(a netlink.Addr) (netip.Prefix, bool) {
	ip, ok := netip.AddrFromSlice(a.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	bits, _ := a.Mask.Size()
	return netip.PrefixFrom(ip.Unmap(), bits), true
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
