package network

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/config"
	"github.com/openslicer/openslicer/internal/testenv"
)

func setup(t *testing.T, h *Host, g config.HostGroup, vm string, slot int, override *api.CreateNodeNetworkPolicy) (Plan, Attachment) {
	t.Helper()
	p, err := PlanFor(g, vm, slot, override)
	must(t, err)
	a, err := h.Setup(context.Background(), p)
	must(t, err)
	return p, a
}

func TestBridgeMode(t *testing.T) {
	l := newLab(t)
	h := l.newHost(testPrefix, instanceA)
	ctx := context.Background()
	g := config.HostGroup{Name: "vm", Network: &config.Network{
		Mode: ModeBridge, Bridge: "brtest0", TapPrefix: "ttap", Gateway: "10.77.0.1/24",
	}}
	must(t, h.CheckHost(ctx, []config.HostGroup{g}))
	before := l.snapshot()

	p1, a1 := setup(t, h, g, "vm-1", 0, nil)
	_, a1 = setup(t, h, g, "vm-1", 0, nil) // idempotent
	p2, a2 := setup(t, h, g, "vm-2", 1, nil)
	if a1.NetNS != "" || a1.TAP != "ttap0" || a2.TAP != "ttap1" {
		t.Fatalf("attachments %+v, %+v", a1, a2)
	}
	g1, g2 := l.attach(p1, a1), l.attach(p2, a2)
	vm1, vm2 := p1.Guest.Address.Addr().String(), p2.Guest.Address.Addr().String()
	l.check(
		probe{name: "VM to VM", from: g1.ns, to: vm2 + ":8000", reach: true, source: vm1},
		probe{name: "VM to VM, back", from: g2.ns, to: vm1 + ":8000", reach: true, source: vm2},
		probe{name: "host to VM", from: l.host, to: vm1 + ":8000", reach: true},
		probe{name: "VM to host", from: g1.ns, to: "10.77.0.1:7070", reach: true},
		probe{name: "VM to internet, masqueraded", from: g2.ns, to: inetAddr + ":8080", reach: true, source: uplinkAddr},
	)

	g1.stop()
	g2.stop()
	must(t, h.Teardown(ctx, p1))
	must(t, h.Teardown(ctx, p1)) // idempotent
	must(t, h.Teardown(ctx, p2))
	must(t, h.TeardownGroup(ctx, "vm"))
	l.same("after teardown", before)
}

func TestIsolatedMode(t *testing.T) {
	l := newLab(t)
	h := l.newHost(testPrefix, instanceA)
	ctx := context.Background()
	g := config.HostGroup{Name: "iso", Network: &config.Network{
		Mode: ModeIsolated, Drop: []string{"0.0.0.0/0"}, Allow: []string{inetAddr + ":8080"},
	}}
	must(t, h.CheckHost(ctx, []config.HostGroup{g}))
	before := l.snapshot()

	p1, a1 := setup(t, h, g, "iso-1", 0, nil)
	_, a1 = setup(t, h, g, "iso-1", 0, nil) // idempotent
	// The override replaces the allow list for iso-2 only.
	p2, a2 := setup(t, h, g, "iso-2", 1, &api.CreateNodeNetworkPolicy{Allow: []string{"198.51.100.0/24"}})
	// Cleared lists: iso-3 may go anywhere, except to the host and to VMs.
	p3, a3 := setup(t, h, g, "iso-3", 2, &api.CreateNodeNetworkPolicy{Allow: []string{}, Drop: []string{}})
	if a1.NetNS != filepath.Join(l.vmDir, testPrefix+"-"+instanceA+"-vm-iso-1") || a1.TAP != "tap0" {
		t.Fatalf("attachment %+v", a1)
	}
	if !DefaultRange("iso").Contains(p1.Guest.Address.Addr()) {
		t.Errorf("iso-1 has %s, outside the default range %s", p1.Guest.Address, DefaultRange("iso"))
	}
	if _, err := h.nl.LinkByName("tap0"); !notFound(err) {
		t.Errorf("a tap0 is in the host namespace (%v); it belongs in the VM's", err)
	}
	g1, g2, g3 := l.attach(p1, a1), l.attach(p2, a2), l.attach(p3, a3)
	vm1, vm2 := p1.Guest.Address.Addr().String(), p2.Guest.Address.Addr().String()
	l.check(
		probe{name: "cleared lists allow all", from: g3.ns, to: droppedAddr + ":8080", reach: true, source: uplinkAddr},
		probe{name: "cleared lists allow all, another port", from: g3.ns, to: inetAddr + ":9090", reach: true},
		probe{name: "VM with open egress to VM", from: g3.ns, to: vm1 + ":8000"},
		probe{name: "VM with open egress to host", from: g3.ns, to: p3.Guest.Gateway.String() + ":7070"},
		probe{name: "VM with open egress to another host address", from: g3.ns, to: uplinkAddr + ":7070"},
		probe{name: "allowed IP:port", from: g1.ns, to: inetAddr + ":8080", reach: true, source: uplinkAddr},
		probe{name: "another port of the allowed IP", from: g1.ns, to: inetAddr + ":9090"},
		probe{name: "dropped CIDR", from: g1.ns, to: droppedAddr + ":8080"},
		probe{name: "override allows the CIDR", from: g2.ns, to: droppedAddr + ":8080", reach: true, source: uplinkAddr},
		probe{name: "override replaced the allow list", from: g2.ns, to: inetAddr + ":8080"},
		probe{name: "VM to VM", from: g1.ns, to: vm2 + ":8000"},
		probe{name: "VM to VM, back", from: g2.ns, to: vm1 + ":8000"},
		probe{name: "VM to its gateway", from: g1.ns, to: p1.Guest.Gateway.String() + ":7070"},
		probe{name: "VM to another host address", from: g2.ns, to: uplinkAddr + ":7070"},
		probe{name: "host to VM", from: l.host, to: vm1 + ":8000", reach: true},
	)

	for _, g := range []*guest{g1, g2, g3} {
		g.stop()
	}
	must(t, h.Teardown(ctx, p1))
	must(t, h.Teardown(ctx, p2))
	must(t, h.Teardown(ctx, p3))
	must(t, h.Teardown(ctx, p2)) // idempotent
	l.same("after teardown", before)
}

// VMs with open egress, in a range outside link-local, still cannot reach
// each other, the host or the metadata service.
func TestIsolatedModeOpenEgress(t *testing.T) {
	l := newLab(t)
	h := l.newHost(testPrefix, instanceA)
	ctx := context.Background()
	g := config.HostGroup{Name: "x", Network: &config.Network{Mode: ModeIsolated, Range: "10.201.0.0/22"}}
	must(t, h.CheckHost(ctx, []config.HostGroup{g}))
	before := l.snapshot()

	p1, a1 := setup(t, h, g, "x-1", 0, nil)
	p2, a2 := setup(t, h, g, "x-2", 1, nil)
	g1, g2 := l.attach(p1, a1), l.attach(p2, a2)
	l.check(
		probe{name: "open egress", from: g1.ns, to: droppedAddr + ":8080", reach: true, source: uplinkAddr},
		probe{name: "open egress, back", from: g2.ns, to: inetAddr + ":9090", reach: true, source: uplinkAddr},
		probe{name: "VM to VM", from: g1.ns, to: "10.201.0.6:8000"},
		probe{name: "VM to VM, back", from: g2.ns, to: "10.201.0.2:8000"},
		probe{name: "VM to its gateway", from: g1.ns, to: "10.201.0.1:7070"},
		probe{name: "VM to another VM's gateway", from: g1.ns, to: "10.201.0.5:7070"},
		probe{name: "metadata service", from: g2.ns, to: metadataIP + ":8080"},
		probe{name: "host to VM", from: l.host, to: "10.201.0.6:8000", reach: true},
	)
	g1.stop()
	g2.stop()
	must(t, h.Reclaim(ctx, nil, nil))
	l.same("after reclaim", before)
}

// Reclaim removes hundreds of leftovers at once and keeps what it is told
// to keep, and what another daemon owns, even where its VMs have the same
// names.
func TestReclaim(t *testing.T) {
	l := newLab(t)
	h := l.newHost(testPrefix, instanceA)
	ctx := context.Background()
	iso := config.HostGroup{Name: "r", Network: &config.Network{Mode: ModeIsolated, Drop: []string{"10.0.0.0/8"}}}
	br := config.HostGroup{Name: "b", Network: &config.Network{
		Mode: ModeBridge, Bridge: "brtest1", TapPrefix: "btap", Gateway: "10.78.0.1/24",
	}}
	before := l.snapshot()

	other := l.newHost(testPrefix, instanceB)
	otherGroup := config.HostGroup{Name: "r", Network: &config.Network{Mode: ModeIsolated, Range: "10.79.0.0/22"}}
	setup(t, other, otherGroup, "r-1", 0, nil)
	withOther := l.snapshot()

	const isolated, bridged = 200, 50
	var kept Plan
	for i := range isolated {
		p, _ := setup(t, h, iso, fmt.Sprintf("r-%d", i+1), i, nil)
		if p.VM == "r-7" {
			kept = p
		}
	}
	for i := range bridged {
		setup(t, h, br, fmt.Sprintf("b-%d", i+1), i, nil)
	}
	if n := len(l.snapshot().Namespaces); n != isolated+1 {
		t.Fatalf("%d namespaces after setting up %d isolated VMs and one other", n, isolated)
	}
	start := time.Now()
	must(t, h.Reclaim(ctx, func(vm string) bool { return vm == "r-7" }, nil))
	t.Logf("reclaimed %d isolated and %d bridge VMs in %s", isolated-1, bridged, time.Since(start))

	after := l.snapshot()
	for _, list := range [][]string{after.Links, after.Namespaces, after.Tables} {
		for _, name := range list {
			if strings.Contains(name, instanceA) && !strings.Contains(name, "r-7") {
				t.Errorf("%q is left after Reclaim", name)
			}
		}
	}
	if !strings.Contains(fmt.Sprint(after.Namespaces), testPrefix+"-"+instanceA+"-vm-r-7 ") {
		t.Errorf("the kept VM's namespace is gone: %v", after.Namespaces)
	}
	must(t, h.Teardown(ctx, kept))
	l.same("after reclaim", withOther)
	must(t, other.Reclaim(ctx, nil, nil))
	l.same("after reclaiming the other prefix", before)
}

func TestCheckHostSeesTheHost(t *testing.T) {
	l := newLab(t)
	h := l.newHost(testPrefix, instanceA)
	ctx := context.Background()
	clash := config.HostGroup{Name: "vm", Network: &config.Network{
		Mode: ModeBridge, Bridge: "brtest0", TapPrefix: "ttap", Gateway: uplinkAddr + "0/24",
	}}
	// 203.0.113.10/24 is the uplink's network.
	err := h.CheckHost(ctx, []config.HostGroup{clash})
	if err == nil || !strings.Contains(err.Error(), "already on uplink") {
		t.Errorf("CheckHost() = %v, want the uplink's network reported", err)
	}
	if err := h.CheckHost(ctx, []config.HostGroup{{Name: "plain"}}); err != nil {
		t.Errorf("CheckHost(no network) = %v", err)
	}
}

// The hypervisor, started through InNetNS, opens the isolated VM's TAP by
// name: QEMU attaching gives the TAP its carrier. Started outside the
// namespace, QEMU would instead create a fresh tap0 in the host namespace.
func TestQEMUOpensTheTAPInTheNamespace(t *testing.T) {
	testenv.RequireQEMU(t)
	l := newLab(t)
	h := l.newHost(testPrefix, instanceA)
	ctx := context.Background()
	g := config.HostGroup{Name: "q", Network: &config.Network{Mode: ModeIsolated}}
	p, a := setup(t, h, g, "q-1", 0, nil)
	t.Cleanup(func() { h.Teardown(ctx, p) })

	cmd := exec.Command("qemu-system-x86_64", "-M", "microvm", "-nodefaults", "-no-user-config",
		"-display", "none", "-S", "-netdev", "tap,id=n0,script=no,downscript=no,ifname="+a.TAP,
		"-device", "virtio-net-device,netdev=n0,mac="+a.MAC)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	must(t, InNetNS(a.NetNS, cmd.Start))
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill(); <-exited })

	vmns, err := netns.GetFromPath(a.NetNS)
	must(t, err)
	defer vmns.Close()
	vnl, err := netlink.NewHandleAt(vmns)
	must(t, err)
	defer vnl.Close()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		select {
		case err := <-exited:
			t.Fatalf("qemu exited: %v\n%s", err, out.String())
		default:
		}
		tap, err := vnl.LinkByName(a.TAP)
		must(t, err)
		if tap.Attrs().RawFlags&unix.IFF_LOWER_UP != 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s in the VM namespace never got a carrier; qemu said:\n%s", a.TAP, out.String())
		}
	}
	if _, err := h.nl.LinkByName(a.TAP); !notFound(err) {
		t.Errorf("qemu made a %s in the host namespace (%v)", a.TAP, err)
	}
}
