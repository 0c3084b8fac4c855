package network

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// ProbeHost checks, by doing each once, that this host can make what the
// daemon makes for VM networks: it opens /dev/net/tun, creates and deletes
// an inet nftables table, a named network namespace, a veth pair with one
// end moved into that namespace, and a bridge. Every object is named after
// opt.Tag, never carries this package's ownership marks, and is removed
// before ProbeHost returns, whatever failed. It needs root; as another
// user each probe reports the kernel's refusal.
func ProbeHost(ctx context.Context, opt ProbeOptions) (p Probe) {
	fail := func(err error) Probe { return Probe{TUN: err, NFTables: err, NetNS: err, Veth: err, Bridge: err} }
	if !prefixRE.MatchString(opt.Tag) || len(opt.Tag) > 11 {
		return fail(fmt.Errorf("probe tag %q: want at most 11 lowercase letters and digits", opt.Tag))
	}
	if opt.NetNSDir == "" {
		opt.NetNSDir = DefaultNetNSDir
	}
	var host netns.NsHandle
	var err error
	if opt.NetNS == "" {
		host, err = netns.Get()
	} else {
		host, err = netns.GetFromPath(opt.NetNS)
	}
	if err != nil {
		return fail(fmt.Errorf("open host network namespace: %w", err))
	}
	defer host.Close()

	p.TUN = probeTUN()
	p.NFTables = probeNFTables(host, opt.Tag)
	nsPath := filepath.Join(opt.NetNSDir, opt.Tag)
	if ctx.Err() == nil {
		p.NetNS = ensureNetNS(nsPath)
	} else {
		p.NetNS = ctx.Err()
	}
	if p.NetNS == nil {
		defer func() {
			if err := deleteNetNS(nsPath); err != nil {
				p.NetNS = err
			}
		}()
	}
	nl, err := netlink.NewHandleAt(host)
	if err != nil {
		p.Veth, p.Bridge = err, err
		return p
	}
	defer nl.Close()
	p.Veth = probeVeth(nl, opt.Tag, nsPath, p.NetNS)
	p.Bridge = probeBridge(nl, opt.Tag+"br")
	return p
}

func probeTUN() error {
	f, err := os.OpenFile("/dev/net/tun", os.O_RDWR, 0)
	if err != nil {
		return err
	}
	return f.Close()
}

// probeNFTables adds an empty inet table and deletes it, each in its own
// transaction, as applying and removing a VM's rules does.
func probeNFTables(ns netns.NsHandle, name string) error {
	c, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		return fmt.Errorf("open nftables: %w", err)
	}
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: name}
	c.AddTable(t)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("create nftables table %s: %w", name, err)
	}
	c.DelTable(t)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("delete nftables table %s: %w (remove it with: nft delete table inet %s)", name, err, name)
	}
	return nil
}

// probeVeth creates the pair <tag>a/<tag>b, moves <tag>b into the
// namespace at nsPath when nsErr says it was made, and deletes the pair
// (one end takes the other with it).
func probeVeth(nl *netlink.Handle, tag, nsPath string, nsErr error) error {
	host := tag + "a"
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: host}, PeerName: tag + "b"}
	if nsErr == nil {
		ns, err := netns.GetFromPath(nsPath)
		if err != nil {
			return fmt.Errorf("open network namespace %s: %w", nsPath, err)
		}
		defer ns.Close()
		veth.PeerNamespace = netlink.NsFd(ns)
	}
	if err := nl.LinkAdd(veth); err != nil {
		return fmt.Errorf("create veth pair %s: %w", host, err)
	}
	return deleteLink(nl, host)
}

func probeBridge(nl *netlink.Handle, name string) error {
	if err := nl.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}); err != nil {
		return fmt.Errorf("create bridge %s: %w", name, err)
	}
	return deleteLink(nl, name)
}

func deleteLink(nl *netlink.Handle, name string) error {
	l, err := nl.LinkByName(name)
	if err == nil {
		err = nl.LinkDel(l)
	}
	var notFound netlink.LinkNotFoundError
	if err != nil && !errors.As(err, &notFound) {
		return fmt.Errorf("delete %s: %w (remove it with: ip link del %s)", name, err, name)
	}
	return nil
}
