package network

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/openslicer/openslicer/internal/config"
)

// Two daemons on one host whose groups and VMs have the same names: each
// one's reclaim leaves the other's objects, and its VMs' traffic, alone.
func TestReclaimKeepsAnotherDaemonsObjects(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	a, b := l.newHost(testPrefix, instanceA), l.newHost(testPrefix, instanceB)
	bridged := func(bridge, tap, gw string) config.HostGroup {
		return config.HostGroup{Name: "vm", Network: &config.Network{Mode: ModeBridge, Bridge: bridge, TapPrefix: tap, Gateway: gw}}
	}
	isolated := func(r string) config.HostGroup {
		return config.HostGroup{Name: "iso", Network: &config.Network{Mode: ModeIsolated, Range: r}}
	}
	bridgeA, isoA := bridged("brtest0", "ttap", "10.77.0.1/24"), isolated("10.201.0.0/22")
	bridgeB, isoB := bridged("brtest1", "utap", "10.78.0.1/24"), isolated("10.202.0.0/22")
	before := l.snapshot()

	pa1, aa1 := setup(t, a, bridgeA, "vm-1", 0, nil)
	pa2, aa2 := setup(t, a, bridgeA, "vm-2", 1, nil)
	pa3, aa3 := setup(t, a, isoA, "iso-1", 0, nil)
	ga1, ga2, ga3 := l.attach(pa1, aa1), l.attach(pa2, aa2), l.attach(pa3, aa3)
	onlyA := l.snapshot()
	aWorks := func(when string) {
		t.Helper()
		t.Log(when)
		l.check(
			probe{name: when + ": A's VM to VM", from: ga1.ns, to: "10.77.0.3:8000", reach: true, source: "10.77.0.2"},
			probe{name: when + ": A's bridge VM to internet", from: ga2.ns, to: inetAddr + ":8080", reach: true, source: uplinkAddr},
			probe{name: when + ": A's isolated VM to internet", from: ga3.ns, to: inetAddr + ":8080", reach: true, source: uplinkAddr},
		)
	}
	aWorks("before B")

	// B: the same group and VM names on other networks passes the check,
	// and works beside A.
	must(t, b.CheckHost(ctx, []config.HostGroup{bridgeB, isoB}))
	pb1, ab1 := setup(t, b, bridgeB, "vm-1", 0, nil)
	pb2, ab2 := setup(t, b, isoB, "iso-1", 0, nil)
	if ab2.NetNS == aa3.NetNS {
		t.Fatalf("both daemons' iso-1 have namespace %s", ab2.NetNS)
	}
	if va, vb := a.own.hostVeth("iso-1"), b.own.hostVeth("iso-1"); va == vb {
		t.Fatalf("both daemons' iso-1 have veth %s", va)
	}
	gb1, gb2 := l.attach(pb1, ab1), l.attach(pb2, ab2)
	l.check(
		probe{name: "B's bridge VM to internet", from: gb1.ns, to: inetAddr + ":8080", reach: true, source: uplinkAddr},
		probe{name: "B's isolated VM to internet", from: gb2.ns, to: inetAddr + ":8080", reach: true, source: uplinkAddr},
	)
	l.kept("with B's VMs", onlyA)

	// B stops: its VMs exit and it reclaims everything it kept.
	gb1.stop()
	gb2.stop()
	must(t, b.Reclaim(ctx, nil, nil))
	l.same("after B reclaimed", onlyA)
	aWorks("after B reclaimed")

	// B configured with A's names fails clearly and takes nothing of A's.
	for _, tc := range []struct {
		name  string
		group config.HostGroup
		vm    string
		want  string
	}{
		{"A's bridge", bridged("brtest0", "utap", "10.77.0.1/24"), "vm-1", "bridge brtest0 belongs to another slicer daemon (instance " + instanceA},
		{"A's TAP names", bridged("brtest2", "ttap", "10.79.0.1/24"), "vm-1", "device ttap0 has the name of one of the group's TAPs and belongs to another slicer daemon (instance " + instanceA},
		{"A's isolated range", isolated("10.201.0.0/22"), "iso-1", "overlaps 10.201.0.1/30, already on " + a.own.hostVeth("iso-1")},
	} {
		if err := b.CheckHost(ctx, []config.HostGroup{tc.group}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: CheckHost = %v, want an error with %q", tc.name, err, tc.want)
		}
		p, err := PlanFor(tc.group, tc.vm, 0, nil)
		must(t, err)
		if _, err := b.Setup(ctx, p); err == nil {
			t.Errorf("%s: Setup succeeded", tc.name)
		} else {
			t.Logf("%s: Setup: %v", tc.name, err)
		}
		must(t, b.Teardown(ctx, p))
		must(t, b.Reclaim(ctx, nil, nil))
		l.same("after B failed with "+tc.name, onlyA)
	}
	aWorks("after B's failed setups")

	for _, g := range []*guest{ga1, ga2, ga3} {
		g.stop()
	}
	must(t, a.Reclaim(ctx, nil, nil))
	l.same("after A reclaimed", before)
}

// Objects made before instance ids are not reclaimed: they are logged
// once, and a VM whose plan predates instance ids keeps them while it
// runs and removes them at its teardown.
func TestLegacyNames(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	var logs syncBuffer
	h, err := New(Options{Prefix: testPrefix, Instance: instanceA, NetNS: l.host, NetNSDir: l.vmDir,
		Log: slog.New(slog.NewTextHandler(&logs, nil))})
	must(t, err)
	t.Cleanup(func() { h.Close() })
	iso := config.HostGroup{Name: "old", Network: &config.Network{Mode: ModeIsolated, Range: "10.203.0.0/22"}}
	br := config.HostGroup{Name: "oldb", Network: &config.Network{Mode: ModeBridge, Bridge: "brtest3", TapPrefix: "otap", Gateway: "10.80.0.1/24"}}
	before := l.snapshot()

	legacy := func(g config.HostGroup, vm string) (Plan, Attachment) {
		p, err := PlanFor(g, vm, 0, nil)
		must(t, err)
		p.Naming = NamingLegacy
		a, err := h.Setup(ctx, p)
		must(t, err)
		return p, a
	}
	pi, ai := legacy(iso, "old-1")
	pb, ab := legacy(br, "oldb-1")
	if want := l.vmDir + "/" + testPrefix + "-old-1"; ai.NetNS != want {
		t.Errorf("legacy namespace %s, want %s", ai.NetNS, want)
	}
	snap := l.snapshot()
	for _, want := range []string{"old-1 ", testPrefix + "/vm/old-1", testPrefix + "-vm-old-1", testPrefix + "-group-oldb", testPrefix + "/group/oldb"} {
		if !strings.Contains(strings.Join(append(append(snap.Links, snap.Tables...), snap.Namespaces...), "\n"), want) {
			t.Errorf("no legacy object %q in %+v", want, snap)
		}
	}
	gi, gb := l.attach(pi, ai), l.attach(pb, ab)
	l.check(
		probe{name: "legacy isolated VM to internet", from: gi.ns, to: inetAddr + ":8080", reach: true, source: uplinkAddr},
		probe{name: "legacy bridge VM to internet", from: gb.ns, to: inetAddr + ":8080", reach: true, source: uplinkAddr},
	)
	withLegacy := l.snapshot()

	must(t, h.Reclaim(ctx, nil, nil))
	must(t, h.Reclaim(ctx, nil, nil))
	l.same("after reclaim", withLegacy)
	if n := strings.Count(logs.String(), "without an instance id"); n != 1 {
		t.Errorf("the legacy objects were logged %d times, want once:\n%s", n, logs.String())
	}
	for _, name := range []string{"link old-1", "table " + testPrefix + "-vm-old-1", "netns " + testPrefix + "-old-1", "link brtest3"} {
		if !strings.Contains(logs.String(), name) {
			t.Errorf("the log does not name %q:\n%s", name, logs.String())
		}
	}

	// Re-applying the recorded plan (a daemon restart) keeps the objects.
	_, err = h.Setup(ctx, pi)
	must(t, err)
	l.kept("after re-applying the legacy plan", withLegacy)
	l.check(probe{name: "legacy isolated VM after re-apply", from: gi.ns, to: inetAddr + ":8080", reach: true})

	gi.stop()
	gb.stop()
	must(t, h.Teardown(ctx, pi))
	must(t, h.Teardown(ctx, pb))
	// The legacy group's bridge and table are left, as an admin's bridge is.
	for _, obj := range [][2]string{{"link", "brtest3"}, {"table", testPrefix + "-group-oldb"}} {
		if !strings.Contains(strings.Join(append(l.snapshot().Links, l.snapshot().Tables...), "\n"), obj[1]) {
			t.Errorf("legacy group %s %s was removed", obj[0], obj[1])
		}
	}
	cleanupLegacyGroup(t, h, "oldb", "brtest3")
	l.same("after teardown", before)
}

// cleanupLegacyGroup removes what a legacy bridge group leaves, as an
// admin would.
func cleanupLegacyGroup(t *testing.T, h *Host, group, bridge string) {
	t.Helper()
	br, err := h.nl.LinkByName(bridge)
	must(t, err)
	must(t, h.deleteLink(br))
	must(t, h.deleteTables([]string{owner{prefix: h.own.prefix}.groupTable(group)}))
}

// syncBuffer is a bytes.Buffer safe for a logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
