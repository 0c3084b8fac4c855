package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/testenv"
)

// snapshotNetGroup is netGroupYAML's group name with network net, its
// VMs snapshot template clones.
func snapshotNetGroup(name, net string) string {
	return strings.Replace(fmt.Sprintf(netGroupYAML, name, net), "    network:\n", "    snapshot: true\n    network:\n", 1)
}

// TestNetworkedClones: in a bridge group, template clones and a hot fork
// of one of them each wake with the captured machine's MAC and no address
// of their own, and must come up with their own: a MAC, an address and a
// default route that work on the bridge, reached by the host and by each
// other; the source of the fork keeps working. In an isolated group, a
// clone and its fork are each under the group's egress rules.
func TestNetworkedClones(t *testing.T) {
	testenv.RequireE2E(t)
	testenv.RequireRoot(t)
	lab := newNetLab(t)
	before := lab.state()
	d := startDaemonIn(t, lab.host, snapshotNetGroup("nt", bridgeNet)+snapshotNetGroup("ni", isolatedNet))
	c, ctx := d.client, context.Background()

	a, b := createNet(t, c, "nt", nil), createNet(t, c, "nt", nil)
	commit, child := memoryFork(t, c, a.Hostname, nil)
	desc, err := c.Describe(ctx, child)
	if err != nil {
		t.Fatal(err)
	}

	vms := map[string]string{a.Hostname: bareIP(a.IP), b.Hostname: bareIP(b.IP), child: bareIP(desc.IP)}
	macs, ips := map[string]string{}, map[string]string{}
	for host, ip := range vms {
		out, _, code := execIn(t, c, host, &api.ExecRequest{Command: "cat /sys/class/net/eth0/address; ip -4 -o addr show dev eth0", Shell: "/bin/sh"}, nil)
		lines := strings.SplitN(strings.TrimSpace(out), "\n", 2)
		if code != 0 || len(lines) != 2 || !strings.Contains(lines[1], " inet "+ip+"/") {
			t.Errorf("%s: eth0 %q (exit %d), want address %s", host, out, code, ip)
			continue
		}
		mac := strings.TrimSpace(lines[0])
		if other, dup := macs[mac]; dup {
			t.Errorf("%s and %s share MAC %s", host, other, mac)
		}
		if other, dup := ips[ip]; dup {
			t.Errorf("%s and %s share address %s", host, other, ip)
		}
		macs[mac], ips[ip] = host, host
		if !pings(t, c, host, "10.123.0.1") {
			t.Errorf("%s cannot ping its gateway", host)
		}
		if err := lab.ping(ip); err != nil {
			t.Errorf("host cannot ping %s at %s: %v", host, ip, err)
		}
	}
	if !pings(t, c, child, bareIP(b.IP)) || !pings(t, c, b.Hostname, bareIP(desc.IP)) {
		t.Errorf("the fork %s and the clone %s cannot ping each other", child, b.Hostname)
	}

	// Isolated: a clone and its hot fork each in a namespace of their own,
	// under the group's egress rules.
	iso := createNet(t, c, "ni", nil)
	isoCommit, isoChild := memoryFork(t, c, iso.Hostname, nil)
	for _, h := range []string{iso.Hostname, isoChild} {
		if !reach(t, c, h, labInet+":8080") {
			t.Errorf("%s cannot reach the service its group allows", h)
		}
		if reach(t, c, h, labInet+":9090") {
			t.Errorf("%s reaches a service its group drops", h)
		}
	}

	for _, vm := range [][2]string{{"nt", child}, {"nt", a.Hostname}, {"nt", b.Hostname}, {"ni", isoChild}, {"ni", iso.Hostname}} {
		if _, err := c.DeleteNode(ctx, vm[0], vm[1]); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{commit, isoCommit} {
		if _, err := c.DeleteCommit(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	d.stop()
	if diff := cmp.Diff(before, lab.state()); diff != "" {
		t.Errorf("network objects left after delete and stop (-before +after):\n%s", diff)
	}
}
