package network

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/openslicer/openslicer/internal/testenv"
)

// A lab is a small world of network namespaces made by the test, so the
// machine's own network is never touched: "host" stands in for the
// daemon's host, "inet" for the internet behind it, one namespace per
// guest stands in for a VM. Every address lives only inside them.
//
//	inet: eth0 203.0.113.2/24, 198.51.100.10/32 (a "dropped" network),
//	      169.254.169.254/32 (a cloud metadata service)
//	host: uplink 203.0.113.1/24, routes to 198.51.100.0/24 and
//	      169.254.169.254 via 203.0.113.2
type lab struct {
	t     *testing.T
	dir   string // the lab's own namespaces
	vmDir string // Options.NetNSDir: the VMs' namespaces
	host  string // namespace paths
	inet  string
	// guests counts attached guests, to name their namespaces.
	guests int
}

const (
	inetAddr    = "203.0.113.2"
	uplinkAddr  = "203.0.113.1"
	droppedAddr = "198.51.100.10"
	metadataIP  = "169.254.169.254"
	testPrefix  = "slicertest"
	// Instance ids of the daemons a test plays.
	instanceA = "0a1b2c3d"
	instanceB = "9f8e7d6c"
)

func newLab(t *testing.T) *lab {
	testenv.RequireRoot(t)
	root := t.TempDir()
	l := &lab{t: t, dir: filepath.Join(root, "lab"), vmDir: filepath.Join(root, "netns")}
	l.host = l.namespace("host")
	l.inet = l.namespace("inet")

	hnl, inl := l.handle(l.host), l.handle(l.inet)
	for _, nl := range []*netlink.Handle{hnl, inl} {
		lo, err := nl.LinkByName("lo")
		must(t, err)
		must(t, nl.LinkSetUp(lo))
	}
	inetNS, err := netns.GetFromPath(l.inet)
	must(t, err)
	defer inetNS.Close()
	must(t, hnl.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "uplink"}, PeerName: "eth0", PeerNamespace: netlink.NsFd(inetNS)}))
	uplink, err := hnl.LinkByName("uplink")
	must(t, err)
	must(t, hnl.AddrAdd(uplink, &netlink.Addr{IPNet: ipNet(netip.MustParsePrefix(uplinkAddr + "/24"))}))
	must(t, hnl.LinkSetUp(uplink))
	eth0, err := inl.LinkByName("eth0")
	must(t, err)
	must(t, inl.AddrAdd(eth0, &netlink.Addr{IPNet: ipNet(netip.MustParsePrefix(inetAddr + "/24"))}))
	must(t, inl.AddrAdd(eth0, &netlink.Addr{IPNet: ipNet(netip.MustParsePrefix(droppedAddr + "/32"))}))
	must(t, inl.AddrAdd(eth0, &netlink.Addr{IPNet: ipNet(netip.MustParsePrefix(metadataIP + "/32"))}))
	must(t, inl.LinkSetUp(eth0))
	for _, dst := range []string{"198.51.100.0/24", metadataIP + "/32"} {
		must(t, hnl.RouteAdd(&netlink.Route{
			Dst: ipNet(netip.MustParsePrefix(dst)), Gw: net.ParseIP(inetAddr), LinkIndex: uplink.Attrs().Index,
		}))
	}

	l.serve(l.inet, inetAddr+":8080")
	l.serve(l.inet, inetAddr+":9090")
	l.serve(l.inet, droppedAddr+":8080")
	l.serve(l.inet, metadataIP+":8080")
	l.serve(l.host, ":7070")
	return l
}

// namespace makes a named namespace of the lab, removed at the end.
func (l *lab) namespace(name string) string {
	path := filepath.Join(l.dir, name)
	if err := ensureNetNS(path); err != nil {
		if errors.Is(err, unix.EPERM) {
			l.t.Skipf("cannot create network namespaces here: %v", err)
		}
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() {
		if err := deleteNetNS(path); err != nil {
			l.t.Error(err)
		}
	})
	return path
}

func (l *lab) handle(path string) *netlink.Handle {
	ns, err := netns.GetFromPath(path)
	must(l.t, err)
	defer ns.Close()
	nl, err := netlink.NewHandleAt(ns)
	must(l.t, err)
	l.t.Cleanup(nl.Close)
	return nl
}

func (l *lab) newHost(prefix, instance string) *Host {
	h, err := New(Options{Prefix: prefix, Instance: instance, NetNS: l.host, NetNSDir: l.vmDir})
	must(l.t, err)
	l.t.Cleanup(func() {
		// What a failed test left: the namespaces are mounted under
		// the test's temporary directory.
		if err := h.Reclaim(context.Background(), nil, nil); err != nil {
			l.t.Error(err)
		}
		h.Close()
	})
	return h
}

// serve answers every TCP connection to addr, inside namespace ns, with
// the address it came from.
func (l *lab) serve(ns, addr string) {
	var ln net.Listener
	must(l.t, InNetNS(ns, func() (err error) {
		ln, err = net.Listen("tcp", addr)
		return err
	}))
	done := make(chan struct{})
	l.t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintln(c, c.RemoteAddr())
			c.Close()
		}
	}()
}

// guest is a namespace standing in for a VM: its "eth0" is a TAP whose
// frames are relayed to and from the VM's TAP, as the hypervisor would.
type guest struct {
	ns    string
	files []*os.File
	wg    sync.WaitGroup
}

// attach starts a guest for plan p, opening the VM's TAP by name inside
// the namespace the Attachment names (the host's in bridge mode).
func (l *lab) attach(p Plan, a Attachment) *guest {
	l.guests++
	g := &guest{ns: l.namespace(fmt.Sprintf("guest%d-%s", l.guests, p.VM))}
	tapNS := a.NetNS
	if tapNS == "" {
		tapNS = l.host
	}
	var vmTap, inner *os.File
	must(l.t, InNetNS(tapNS, func() (err error) { vmTap, err = openTAP(a.TAP); return err }))
	must(l.t, InNetNS(g.ns, func() (err error) { inner, err = openTAP("eth0"); return err }))
	g.files = []*os.File{vmTap, inner}
	l.t.Cleanup(g.stop)

	nl := l.handle(g.ns)
	for _, name := range []string{"lo", "eth0"} {
		link, err := nl.LinkByName(name)
		must(l.t, err)
		if name == "eth0" {
			mac, err := net.ParseMAC(a.MAC)
			must(l.t, err)
			must(l.t, nl.LinkSetHardwareAddr(link, mac))
			must(l.t, nl.AddrAdd(link, &netlink.Addr{IPNet: ipNet(p.Guest.Address)}))
		}
		must(l.t, nl.LinkSetUp(link))
	}
	must(l.t, nl.RouteAdd(&netlink.Route{Gw: p.Guest.Gateway.AsSlice()}))
	g.wg.Add(2)
	go g.relay(vmTap, inner)
	go g.relay(inner, vmTap)
	l.serve(g.ns, p.Guest.Address.Addr().String()+":8000")
	return g
}

func (g *guest) relay(from, to *os.File) {
	defer g.wg.Done()
	buf := make([]byte, 65536)
	for {
		n, err := from.Read(buf)
		if err != nil {
			return
		}
		to.Write(buf[:n])
	}
}

// stop detaches the guest from the VM's TAP, as a hypervisor exiting does.
func (g *guest) stop() {
	for _, f := range g.files {
		f.Close()
	}
	g.wg.Wait()
	g.files = nil
}

// openTAP attaches to TAP name in the calling thread's namespace.
func openTAP(name string) (*os.File, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	ifr, err := unix.NewIfreq(name)
	if err == nil {
		ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
		err = unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr)
	}
	if err == nil {
		err = unix.SetNonblock(fd, true)
	}
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("attach to TAP %s: %w", name, err)
	}
	return os.NewFile(uintptr(fd), name), nil
}

// probe is one TCP connection attempt and what must come of it.
type probe struct {
	name     string
	from, to string // namespace path, address
	reach    bool
	source   string // when set, the address the server must see
}

// check runs the probes concurrently: first those that must connect,
// each retried for a while (links come up asynchronously), which proves
// every path is up; then those that must be blocked. A blocked probe must
// time out (dropped), not be refused: a refusal means the packet got
// through.
func (l *lab) check(probes ...probe) {
	l.t.Helper()
	for _, reach := range []bool{true, false} {
		var wg sync.WaitGroup
		for _, p := range probes {
			if p.reach == reach {
				wg.Go(func() { l.probe(p) })
			}
		}
		wg.Wait()
	}
}

func (l *lab) probe(p probe) {
	seen, err := dial(p.from, p.to)
	for deadline := time.Now().Add(10 * time.Second); p.reach && err != nil && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		seen, err = dial(p.from, p.to)
	}
	var nerr net.Error
	switch {
	case p.reach && err != nil:
		l.t.Errorf("%s: %s not reachable: %v", p.name, p.to, err)
	case !p.reach && err == nil:
		l.t.Errorf("%s: %s reachable, want blocked", p.name, p.to)
	case !p.reach && !(errors.As(err, &nerr) && nerr.Timeout()):
		l.t.Errorf("%s: %s failed with %v, want a timeout (dropped)", p.name, p.to, err)
	case p.reach && p.source != "" && !strings.HasPrefix(seen, p.source+":"):
		l.t.Errorf("%s: server saw %s, want %s", p.name, seen, p.source)
	}
}

func dial(ns, addr string) (seen string, err error) {
	err = InNetNS(ns, func() error {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		b, err := io.ReadAll(c)
		seen = strings.TrimSpace(string(b))
		return err
	})
	return seen, err
}

// snapshot is everything the lab host holds that networking could leave
// behind. Links carry their index and namespaces their inode, so an
// object deleted and made again differs.
type snapshot struct {
	Links      []string
	Namespaces []string
	Tables     []string
}

func (l *lab) snapshot() snapshot {
	var s snapshot
	links, err := l.handle(l.host).LinkList()
	must(l.t, err)
	for _, link := range links {
		a := link.Attrs()
		s.Links = append(s.Links, fmt.Sprintf("%s #%d %s", a.Name, a.Index, a.Alias))
	}
	entries, err := os.ReadDir(l.vmDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		l.t.Fatal(err)
	}
	for _, e := range entries {
		var st unix.Stat_t
		must(l.t, unix.Stat(filepath.Join(l.vmDir, e.Name()), &st))
		s.Namespaces = append(s.Namespaces, fmt.Sprintf("%s ino %d", e.Name(), st.Ino))
	}
	ns, err := netns.GetFromPath(l.host)
	must(l.t, err)
	defer ns.Close()
	c, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	must(l.t, err)
	tables, err := c.ListTables()
	must(l.t, err)
	for _, t := range tables {
		s.Tables = append(s.Tables, t.Name)
	}
	slices.Sort(s.Links)
	slices.Sort(s.Tables)
	return s
}

func (l *lab) same(when string, want snapshot) {
	l.t.Helper()
	if diff := cmp.Diff(want, l.snapshot()); diff != "" {
		l.t.Errorf("%s: host objects differ (-before +after):\n%s", when, diff)
	}
}

// kept checks that every object of want is still there, unchanged.
func (l *lab) kept(when string, want snapshot) {
	l.t.Helper()
	now := l.snapshot()
	for _, c := range []struct {
		kind      string
		want, now []string
	}{{"link", want.Links, now.Links}, {"namespace", want.Namespaces, now.Namespaces}, {"table", want.Tables, now.Tables}} {
		for _, o := range c.want {
			if !slices.Contains(c.now, o) {
				l.t.Errorf("%s: %s %q is gone or was made again", when, c.kind, o)
			}
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
