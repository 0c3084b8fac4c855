package e2e

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/openslicer/openslicer/internal/network"
)

// A netLab is a world of network namespaces the test makes, so that no
// traffic of a networking test leaves the machine: the daemon runs in
// "host", which has no route out; "inet" stands in for the internet
// behind it.
//
//	host: uplink 203.0.113.1/24; 198.51.100.0/24 via 203.0.113.2;
//	      a service on :7070
//	inet: eth0 203.0.113.2/24 and 198.51.100.10/32 (a network a group
//	      drops); services on 203.0.113.2:8080, 203.0.113.2:9090 and
//	      198.51.100.10:8080
//
// Each service writes "hello <address>" and hangs up.
type netLab struct {
	t          *testing.T
	host, inet string // namespace paths
}

const (
	labUplink  = "203.0.113.1"
	labInet    = "203.0.113.2"
	labDropped = "198.51.100.10"
)

func newNetLab(t *testing.T) *netLab {
	t.Helper()
	buildImage(t)
	dir := t.TempDir()
	l := &netLab{t: t, host: makeNetNS(t, filepath.Join(dir, "host")), inet: makeNetNS(t, filepath.Join(dir, "inet"))}
	hnl, inl := nlHandle(t, l.host), nlHandle(t, l.inet)
	for _, nl := range []*netlink.Handle{hnl, inl} {
		lo, err := nl.LinkByName("lo")
		check(t, err)
		check(t, nl.LinkSetUp(lo))
	}
	inetNS, err := netns.GetFromPath(l.inet)
	check(t, err)
	defer inetNS.Close()
	check(t, hnl.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "uplink"}, PeerName: "eth0", PeerNamespace: netlink.NsFd(inetNS)}))
	uplink, err := hnl.LinkByName("uplink")
	check(t, err)
	check(t, hnl.AddrAdd(uplink, mustAddr(t, labUplink+"/24")))
	check(t, hnl.LinkSetUp(uplink))
	eth0, err := inl.LinkByName("eth0")
	check(t, err)
	check(t, inl.AddrAdd(eth0, mustAddr(t, labInet+"/24")))
	check(t, inl.AddrAdd(eth0, mustAddr(t, labDropped+"/32")))
	check(t, inl.LinkSetUp(eth0))
	_, dst, _ := net.ParseCIDR("198.51.100.0/24")
	check(t, hnl.RouteAdd(&netlink.Route{Dst: dst, Gw: net.ParseIP(labInet), LinkIndex: uplink.Attrs().Index}))

	l.serve(l.inet, labInet+":8080")
	l.serve(l.inet, labInet+":9090")
	l.serve(l.inet, labDropped+":8080")
	l.serve(l.host, ":7070")
	return l
}

var (
	imageOnce sync.Once
	imageErr  error
)

// buildImage builds the min image in the shared cache from the test's own
// namespace: a daemon in a lab cannot reach the Debian mirror.
func buildImage(t *testing.T) {
	t.Helper()
	imageOnce.Do(func() {
		cmd := exec.Command(filepath.Join(binDir, "slicer"), "image", "build", "--image-dir", imageDir, "--agent", filepath.Join(binDir, "slicer-agent"))
		if out, err := cmd.CombinedOutput(); err != nil {
			imageErr = fmt.Errorf("slicer image build: %v\n%s", err, out)
		}
	})
	if imageErr != nil {
		t.Fatal(imageErr)
	}
}

// makeNetNS makes a named network namespace at path, removed at cleanup.
func makeNetNS(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Create(path)
	check(t, err)
	f.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		errc <- unix.Mount(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()), path, "", unix.MS_BIND, "")
	}()
	if err := <-errc; err != nil {
		t.Fatalf("make network namespace %s: %v", path, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(path, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", path, err)
		}
	})
	return path
}

func nlHandle(t *testing.T, path string) *netlink.Handle {
	t.Helper()
	ns, err := netns.GetFromPath(path)
	check(t, err)
	defer ns.Close()
	nl, err := netlink.NewHandleAt(ns)
	check(t, err)
	t.Cleanup(nl.Close)
	return nl
}

// serve answers every connection to addr, in namespace ns, with a line.
func (l *netLab) serve(ns, addr string) {
	var ln net.Listener
	check(l.t, network.InNetNS(ns, func() (err error) {
		ln, err = net.Listen("tcp4", addr)
		return err
	}))
	l.t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "hello %s\n", c.LocalAddr())
			c.Close()
		}
	}()
}

// ping pings addr once from the lab's host namespace.
func (l *netLab) ping(addr string) error {
	return network.InNetNS(l.host, func() error {
		out, err := exec.Command("busybox", "ping", "-c1", "-W2", addr).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
}

// netState is what a daemon may have made: links (with index and alias)
// and nftables tables of the lab's host namespace, and the named
// namespaces of the machine (with their inode). An object deleted and
// made again differs.
type netState struct {
	Links, Tables, NetNS []string
}

func (l *netLab) state() netState {
	t := l.t
	t.Helper()
	var s netState
	links, err := nlHandle(t, l.host).LinkList()
	check(t, err)
	for _, k := range links {
		a := k.Attrs()
		s.Links = append(s.Links, fmt.Sprintf("%s #%d %s", a.Name, a.Index, a.Alias))
	}
	ns, err := netns.GetFromPath(l.host)
	check(t, err)
	defer ns.Close()
	conn, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	check(t, err)
	tables, err := conn.ListTables()
	check(t, err)
	for _, tb := range tables {
		s.Tables = append(s.Tables, tb.Name)
	}
	entries, err := os.ReadDir(network.DefaultNetNSDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	for _, e := range entries {
		var st unix.Stat_t
		if err := unix.Stat(filepath.Join(network.DefaultNetNSDir, e.Name()), &st); err == nil {
			s.NetNS = append(s.NetNS, fmt.Sprintf("%s ino %d", e.Name(), st.Ino))
		}
	}
	for _, l := range [][]string{s.Links, s.Tables, s.NetNS} {
		slices.Sort(l)
	}
	return s
}

// all is every entry of s.
func (s netState) all() []string {
	return slices.Concat(s.Links, s.Tables, s.NetNS)
}

// owned filters s to what a daemon made: names of its prefixes and the
// tests' configs, and links with a daemon's alias.
func (s netState) owned() []string {
	var out []string
	for _, n := range s.all() {
		name, rest, _ := strings.Cut(n, " ")
		if strings.Contains(rest, " slicer/") || slices.ContainsFunc([]string{"slicer", "slt", "slv", "nb-", "ni-"}, func(p string) bool { return strings.HasPrefix(name, p) }) {
			out = append(out, n)
		}
	}
	return out
}

// of filters s to the objects that carry instance id: in their name
// (namespaces, tables) or their alias (links).
func (s netState) of(id string) []string {
	var out []string
	for _, n := range s.all() {
		if strings.Contains(n, "slicer-"+id+"-") || strings.Contains(n, " slicer/"+id+"/") {
			out = append(out, n)
		}
	}
	return out
}

// kept checks that every object of want is still there, unchanged.
func (l *netLab) kept(when string, want []string) {
	l.t.Helper()
	now := l.state().all()
	for _, o := range want {
		if !slices.Contains(now, o) {
			l.t.Errorf("%s: %q is gone or was made again", when, o)
		}
	}
}

func mustAddr(t *testing.T, cidr string) *netlink.Addr {
	a, err := netlink.ParseAddr(cidr)
	check(t, err)
	return a
}

func check(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
