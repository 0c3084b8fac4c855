package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/client"
	"github.com/openslicer/openslicer/internal/testenv"
)

// instance is the daemon's instance id, which its network objects carry.
func (d *daemon) instance() string {
	d.t.Helper()
	data, err := os.ReadFile(filepath.Join(d.dataDir, ".slicer", "instance.json"))
	check(d.t, err)
	var f struct{ ID string }
	check(d.t, json.Unmarshal(data, &f))
	if f.ID == "" {
		d.t.Fatalf("no instance id in %s", data)
	}
	return f.ID
}

// Daemon B, beside daemon A in one host namespace, with groups of the same
// names (on other networks): B's SIGTERM, B's kill -9 and B's restart leave
// A's devices, namespaces and tables as they were, and A's VMs keep egress
// and VM↔VM traffic throughout.
func TestTwoDaemonsNetworks(t *testing.T) {
	testenv.RequireE2E(t)
	testenv.RequireRoot(t)
	lab := newNetLab(t)
	before := lab.state()
	ctx := context.Background()

	a := startDaemonIn(t, lab.host, fmt.Sprintf(netGroupYAML, "nb", bridgeNet)+fmt.Sprintf(netGroupYAML, "ni", isolatedNet))
	a1, a2, a3 := createNet(t, a.client, "nb", nil), createNet(t, a.client, "ni", nil), createNet(t, a.client, "nb", nil)
	aWorks := func(when string) {
		t.Helper()
		if !pings(t, a.client, a1.Hostname, bareIP(a3.IP)) {
			t.Errorf("%s: A's %s cannot ping %s on its bridge", when, a1.Hostname, a3.Hostname)
		}
		if !reach(t, a.client, a1.Hostname, labInet+":8080") {
			t.Errorf("%s: A's bridge vm %s has no egress", when, a1.Hostname)
		}
		if !reach(t, a.client, a2.Hostname, labInet+":8080") {
			t.Errorf("%s: A's isolated vm %s has no egress", when, a2.Hostname)
		}
	}
	aWorks("A alone")
	idA := a.instance()
	withA := lab.state()
	aObjects := withA.of(idA)
	// A's bridge, its two TAPs, the isolated veth; the netns; two tables.
	if len(aObjects) < 7 {
		t.Fatalf("A's objects carry its id %s: %v\nall: %+v", idA, aObjects, withA)
	}

	const bridgeB = `      mode: bridge
      bridge: sltbr1
      tap_prefix: sltu
      gateway: 10.124.0.1/24
`
	b := startDaemonIn(t, lab.host, fmt.Sprintf(netGroupYAML, "nb", bridgeB)+fmt.Sprintf(netGroupYAML, "ni", isolatedNet+"      range: 10.125.0.0/22\n"))
	idB := b.instance()
	if idB == idA {
		t.Fatalf("both daemons have instance id %s", idA)
	}
	bWorks := func(when string, vms ...*api.CreateNodeResponse) {
		t.Helper()
		for _, vm := range vms {
			if !reach(t, b.client, vm.Hostname, labInet+":8080") {
				t.Errorf("%s: B's %s has no egress", when, vm.Hostname)
			}
		}
	}

	// B's VMs have A's VMs' names; B stops with SIGTERM.
	b1, b2 := createNet(t, b.client, "nb", nil), createNet(t, b.client, "ni", nil)
	if b1.Hostname != a1.Hostname || b2.Hostname != a2.Hostname {
		t.Fatalf("B's vms are %s and %s, want A's names %s and %s", b1.Hostname, b2.Hostname, a1.Hostname, a2.Hostname)
	}
	bWorks("B beside A", &b1, &b2)
	lab.kept("B beside A", aObjects)
	b.stop()
	if diff := cmp.Diff(withA, lab.state()); diff != "" {
		t.Errorf("after B's SIGTERM the host differs from A alone (-A alone +now):\n%s", diff)
	}
	aWorks("after B's SIGTERM")

	// B again, killed with VMs running, then started again: it re-attaches
	// its persistent VM and reclaims the rest of its own.
	b.start(filepath.Join(b.dataDir, "slicer.yaml"))
	b3 := *createReady(t, b.client, "nb", api.CreateNodeRequest{Persistent: true})
	b4 := createNet(t, b.client, "ni", nil)
	bWorks("B again", &b3, &b4)
	check(t, b.cmd.Process.Kill())
	b.wait()
	lab.kept("after B's kill -9", aObjects)
	aWorks("after B's kill -9")
	b.start(filepath.Join(b.dataDir, "slicer.yaml"))
	// B reclaimed its ephemeral VM's objects at start, and kept what its
	// re-attached VM uses.
	var bNames []string
	for _, o := range lab.state().of(idB) {
		name, _, _ := strings.Cut(o, " ")
		bNames = append(bNames, name)
	}
	slices.Sort(bNames)
	if want := []string{"slicer-" + idB + "-group-nb", "sltbr1", "sltu0"}; !slices.Equal(bNames, want) {
		t.Errorf("B's objects after its restart: %v, want %v", bNames, want)
	}
	lab.kept("after B's restart", aObjects)
	aWorks("after B's restart")
	bWorks("B restarted", &b3)
	if nodes, err := b.client.ListNodes(ctx, client.ListOptions{}); err != nil || len(nodes) != 1 || nodes[0].Hostname != b3.Hostname {
		t.Errorf("B after restart lists %+v, %v; want only %s", nodes, err, b3.Hostname)
	}
	if _, err := b.client.DeleteNode(ctx, "nb", b3.Hostname); err != nil {
		t.Fatal(err)
	}
	b.stop()
	if diff := cmp.Diff(withA, lab.state()); diff != "" {
		t.Errorf("after B's restart and stop the host differs from A alone (-A alone +now):\n%s", diff)
	}
	aWorks("after B's restart and stop")

	a.stop()
	if diff := cmp.Diff(before, lab.state()); diff != "" {
		t.Errorf("network objects left after A's stop (-before +after):\n%s", diff)
	}
}
