package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/client"
	"github.com/openslicer/openslicer/internal/testenv"
)

// The networking tests are not parallel: they compare the machine's named
// network namespaces before and after, which no other test touches.

const netGroupYAML = `  - name: %s
    count: 0
    vcpu: 1
    ram_mb: 384
    storage: image
    storage_size: 1G
    dns_servers: ["203.0.113.53"]
    network:
%s`

const bridgeNet = `      mode: bridge
      bridge: sltbr0
      tap_prefix: slttap
      gateway: 10.123.0.1/24
`

// isolatedNet allows one service of the "internet" and drops the rest of
// it and the 198.51.100.0/24 network.
const isolatedNet = `      mode: isolated
      allow: ["203.0.113.2:8080"]
      drop: ["203.0.113.0/24", "198.51.100.0/24"]
`

// reach runs nc in the guest against addr and reports whether the
// service answered.
func reach(t *testing.T, c *client.Client, host, addr string) bool {
	t.Helper()
	ip, port, _ := strings.Cut(addr, ":")
	out, _, _ := execIn(t, c, host, &api.ExecRequest{Command: fmt.Sprintf("nc -w 3 %s %s </dev/null", ip, port), Shell: "/bin/sh"}, nil)
	return strings.Contains(out, "hello "+addr)
}

// pings reports whether the guest gets an answer to one ping of addr.
func pings(t *testing.T, c *client.Client, host, addr string) bool {
	t.Helper()
	_, _, code := execIn(t, c, host, &api.ExecRequest{Command: "ping -c1 -W2 " + addr, Shell: "/bin/sh", UID: u32(0)}, nil)
	return code == 0
}

func createNet(t *testing.T, c *client.Client, group string, pol *api.CreateNodeNetworkPolicy) api.CreateNodeResponse {
	t.Helper()
	return *createReady(t, c, group, api.CreateNodeRequest{Network: pol})
}

func bareIP(cidr string) string { ip, _, _ := strings.Cut(cidr, "/"); return ip }

func TestBridgeNetwork(t *testing.T) {
	testenv.RequireE2E(t)
	testenv.RequireRoot(t)
	lab := newNetLab(t)
	before := lab.state()
	d := startDaemonIn(t, lab.host, fmt.Sprintf(netGroupYAML, "nb", bridgeNet))
	c := d.client
	a, b := createNet(t, c, "nb", nil), createNet(t, c, "nb", nil)
	if a.IP != "10.123.0.2/24" || b.IP != "10.123.0.3/24" {
		t.Fatalf("bridge IPs %s and %s, want 10.123.0.2/24 and 10.123.0.3/24", a.IP, b.IP)
	}
	health, err := c.Health(context.Background(), a.Hostname)
	if err != nil || health.IP != bareIP(a.IP) {
		t.Errorf("health of %s = %+v, %v; want ip %s", a.Hostname, health, err, bareIP(a.IP))
	}
	if !pings(t, c, a.Hostname, bareIP(b.IP)) {
		t.Errorf("%s cannot ping %s", a.Hostname, b.IP)
	}
	if !pings(t, c, b.Hostname, "10.123.0.1") {
		t.Errorf("%s cannot ping its gateway", b.Hostname)
	}
	if !reach(t, c, a.Hostname, "10.123.0.1:7070") {
		t.Errorf("%s cannot reach a service on the host", a.Hostname)
	}
	if !reach(t, c, a.Hostname, labInet+":8080") {
		t.Errorf("%s cannot reach the test internet through NAT", a.Hostname)
	}
	if err := lab.ping(bareIP(b.IP)); err != nil {
		t.Errorf("host cannot ping %s: %v", b.Hostname, err)
	}
	out, _, _ := execIn(t, c, a.Hostname, &api.ExecRequest{Command: "cat /etc/resolv.conf", Shell: "/bin/sh"}, nil)
	if !strings.Contains(out, "nameserver 203.0.113.53") {
		t.Errorf("resolv.conf does not name the group's dns server:\n%s", out)
	}

	for _, h := range []string{a.Hostname, b.Hostname} {
		if _, err := c.DeleteNode(context.Background(), "nb", h); err != nil {
			t.Fatal(err)
		}
	}
	d.stop()
	if diff := cmp.Diff(before, lab.state()); diff != "" {
		t.Errorf("network objects left after delete and stop (-before +after):\n%s", diff)
	}
}

func TestIsolatedNetwork(t *testing.T) {
	testenv.RequireE2E(t)
	testenv.RequireRoot(t)
	lab := newNetLab(t)
	before := lab.state()
	d := startDaemonIn(t, lab.host, fmt.Sprintf(netGroupYAML, "ni", isolatedNet))
	c := d.client
	a := createNet(t, c, "ni", nil)
	// b may reach 198.51.100.0/24, and nothing of 203.0.113.0/24.
	override := &api.CreateNodeNetworkPolicy{Allow: []string{}, Drop: []string{"203.0.113.0/24"}}
	b := createNet(t, c, "ni", override)

	desc, err := c.Describe(context.Background(), b.Hostname)
	if err != nil || desc.Network.Source != "vm" || !cmp.Equal(desc.Network.Effective.Drop, override.Drop) {
		t.Errorf("describe %s network = %+v, %v; want the override in force", b.Hostname, desc.Network, err)
	}
	gwA := bareIP(a.IP)
	gwA = gwA[:strings.LastIndex(gwA, ".")] + "." + fmt.Sprint(lastOctet(gwA)-1)
	for _, tc := range []struct {
		vm, addr string
		want     bool
	}{
		{a.Hostname, labInet + ":8080", true},     // allowed IP:port
		{a.Hostname, labInet + ":9090", false},    // the rest of a dropped network
		{a.Hostname, labDropped + ":8080", false}, // a dropped CIDR
		{a.Hostname, gwA + ":7070", false},        // the host, through the gateway
		{a.Hostname, labUplink + ":7070", false},  // the host, at another address
		{b.Hostname, labDropped + ":8080", true},  // the override lifts the drop...
		{b.Hostname, labInet + ":8080", false},    // ...and drops all of 203.0.113.0/24
	} {
		if got := reach(t, c, tc.vm, tc.addr); got != tc.want {
			t.Errorf("%s reaches %s: %v, want %v", tc.vm, tc.addr, got, tc.want)
		}
	}
	if pings(t, c, a.Hostname, bareIP(b.IP)) || pings(t, c, b.Hostname, bareIP(a.IP)) {
		t.Errorf("isolated vms %s and %s reach each other", a.Hostname, b.Hostname)
	}
	if err := lab.ping(bareIP(a.IP)); err != nil {
		t.Errorf("host cannot ping %s: %v", a.Hostname, err)
	}

	for _, h := range []string{a.Hostname, b.Hostname} {
		if _, err := c.DeleteNode(context.Background(), "ni", h); err != nil {
			t.Fatal(err)
		}
	}
	if owned := lab.state().owned(); len(owned) != 0 {
		t.Errorf("network objects left after delete: %v", owned)
	}
	d.stop()
	if diff := cmp.Diff(before, lab.state()); diff != "" {
		t.Errorf("network objects left after stop (-before +after):\n%s", diff)
	}
}

// TestNetworkCrashReclaim kills the daemon with networked VMs running; the
// next daemon reclaims their devices, namespaces and rules at start.
func TestNetworkCrashReclaim(t *testing.T) {
	testenv.RequireE2E(t)
	testenv.RequireRoot(t)
	lab := newNetLab(t)
	before := lab.state()
	d := startDaemonIn(t, lab.host, fmt.Sprintf(netGroupYAML, "nb", bridgeNet)+fmt.Sprintf(netGroupYAML, "ni", isolatedNet))
	createNet(t, d.client, "nb", nil)
	createNet(t, d.client, "ni", nil)
	if owned := lab.state().owned(); len(owned) < 4 {
		t.Fatalf("expected the vms' network objects, found %v", owned)
	}
	d.cmd.Process.Kill()
	d.wait()

	d.start(d.dataDir + "/slicer.yaml")
	var left []string
	for _, n := range lab.state().owned() {
		// The bridge group stays configured.
		if !strings.HasPrefix(n, "sltbr0 ") && n != "slicer-"+d.instance()+"-group-nb" {
			left = append(left, n)
		}
	}
	if len(left) != 0 {
		t.Errorf("left after the restart reclaimed: %v", left)
	}
	d.stop()
	if diff := cmp.Diff(before, lab.state()); diff != "" {
		t.Errorf("network objects left after stop (-before +after):\n%s", diff)
	}
	d.assertNothingLeft(t)
}

func lastOctet(ip string) int {
	var n int
	fmt.Sscanf(ip[strings.LastIndex(ip, ".")+1:], "%d", &n)
	return n
}

// TestRestoreGivesIdentity: a guest restored from its memory image takes
// the hostname and address the daemon gives it through the agent, not
// the ones the image holds. The test gives the running guest another
// hostname, address, default route and resolv.conf before it is
// suspended; after the restore, the guest itself reports its own again,
// and it reaches its gateway.
func TestRestoreGivesIdentity(t *testing.T) {
	testenv.RequireE2E(t)
	testenv.RequireRoot(t)
	lab := newNetLab(t)
	d := startDaemonIn(t, lab.host, fmt.Sprintf(netGroupYAML, "ri", bridgeNet))
	c, ctx := d.client, context.Background()
	node := createNet(t, c, "ri", nil)
	host, root := node.Hostname, u32(0)
	const identity = "cat /proc/sys/kernel/hostname; hostname; cat /etc/hostname; ip -4 -o addr show dev eth0 | awk '{print $4}'; ip route | grep ^default; grep nameserver /etc/resolv.conf"
	_, errOut, code := execIn(t, c, host, &api.ExecRequest{Shell: "/bin/sh", UID: root, Command: "echo stale-name > /proc/sys/kernel/hostname && " +
		"ip addr flush dev eth0 && ip addr add 10.123.0.77/24 dev eth0 && ip route add default via 10.123.0.99 && " +
		"echo 'nameserver 192.0.2.1' > /etc/resolv.conf"}, nil)
	if code != 0 {
		t.Fatalf("give the guest a stale identity: exit %d: %s", code, errOut)
	}
	stale, _, _ := execIn(t, c, host, &api.ExecRequest{Shell: "/bin/sh", Command: identity}, nil)
	if want := "stale-name\nstale-name\n" + host + "\n10.123.0.77/24\ndefault via 10.123.0.99 dev eth0 \nnameserver 192.0.2.1\n"; stale != want {
		t.Fatalf("guest before suspend:\n%s\nwant:\n%s", stale, want)
	}

	if err := c.Suspend(ctx, host); err != nil {
		t.Fatalf("Suspend: %v", err)
	}
	if err := c.Restore(ctx, host, "agent", 2*time.Minute); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	got, _, _ := execIn(t, c, host, &api.ExecRequest{Shell: "/bin/sh", Command: identity}, nil)
	if want := host + "\n" + host + "\n" + host + "\n" + node.IP + "\ndefault via 10.123.0.1 dev eth0 \nnameserver 203.0.113.53\n"; got != want {
		t.Errorf("guest after restore:\n%s\nwant:\n%s", got, want)
	}
	if !pings(t, c, host, "10.123.0.1") {
		t.Errorf("%s cannot ping its gateway after restore", host)
	}
	if _, err := c.DeleteNode(ctx, "ri", host); err != nil {
		t.Fatal(err)
	}
}

// fieldsOf is s with its lines' white space made single spaces.
func fieldsOf(s string) string {
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		lines = append(lines, strings.Join(strings.Fields(l), " "))
	}
	return strings.Join(lines, "\n")
}
