package network

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// TestProbeHostMakesAndRemovesEverything runs the probe in a lab namespace
// standing in for the host, and checks that every probe passed and that
// nothing it made is left: no link, no nftables table, no namespace.
func TestProbeHostMakesAndRemovesEverything(t *testing.T) {
	l := newLab(t)
	nsDir := filepath.Join(t.TempDir(), "netns")
	p := ProbeHost(context.Background(), ProbeOptions{Tag: "sdoctest", NetNS: l.host, NetNSDir: nsDir})
	for what, err := range map[string]error{"tun": p.TUN, "nftables": p.NFTables, "netns": p.NetNS, "veth": p.Veth, "bridge": p.Bridge} {
		if err != nil {
			t.Errorf("%s: %v", what, err)
		}
	}
	assertNoProbeLeftovers(t, l, "sdoctest", nsDir)
}

// TestProbeHostReportsAndKeepsAForeignDevice: a device already holding the
// bridge's name fails the bridge probe, and the probe leaves that device
// alone (it deletes only what it made).
func TestProbeHostReportsAndKeepsAForeignDevice(t *testing.T) {
	l := newLab(t)
	nl := l.handle(l.host)
	must(t, nl.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "sdoctestbr"}, PeerName: "sdoctestx"}))
	p := ProbeHost(context.Background(), ProbeOptions{Tag: "sdoctest", NetNS: l.host, NetNSDir: t.TempDir()})
	if p.Bridge == nil || !strings.Contains(p.Bridge.Error(), "create bridge sdoctestbr") {
		t.Errorf("bridge probe = %v; want a failure naming the bridge", p.Bridge)
	}
	if p.Veth != nil || p.NFTables != nil || p.NetNS != nil {
		t.Errorf("other probes failed: veth %v, nftables %v, netns %v", p.Veth, p.NFTables, p.NetNS)
	}
	if _, err := nl.LinkByName("sdoctestbr"); err != nil {
		t.Errorf("the foreign device was removed: %v", err)
	}
}

func TestProbeHostRejectsABadTag(t *testing.T) {
	p := ProbeHost(context.Background(), ProbeOptions{Tag: "much-too-long-tag"})
	if p.TUN == nil || p.Bridge == nil {
		t.Errorf("ProbeHost with a bad tag = %+v; want every probe to fail", p)
	}
}

func assertNoProbeLeftovers(t *testing.T, l *lab, tag, nsDir string) {
	t.Helper()
	links, err := l.handle(l.host).LinkList()
	must(t, err)
	for _, link := range links {
		if strings.HasPrefix(link.Attrs().Name, tag) {
			t.Errorf("link %s left behind", link.Attrs().Name)
		}
	}
	ns, err := netns.GetFromPath(l.host)
	must(t, err)
	defer ns.Close()
	c, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	must(t, err)
	tables, err := c.ListTables()
	must(t, err)
	for _, tb := range tables {
		if tb.Name == tag {
			t.Errorf("nftables table %s left behind", tb.Name)
		}
	}
	if _, err := os.Stat(filepath.Join(nsDir, tag)); !os.IsNotExist(err) {
		t.Errorf("namespace %s left behind (stat: %v)", filepath.Join(nsDir, tag), err)
	}
}
