package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/client"
	"github.com/openslicer/openslicer/internal/testenv"
)

// poolGroupYAML is a bridge-mode group that keeps two VMs warm, with
// device names no other test uses.
const poolGroupYAML = `  - name: wp
    count: 0
    vcpu: 1
    ram_mb: 384
    storage: image
    storage_size: 1G
    warm: 2
    network:
      mode: bridge
      bridge: slpbr0
      tap_prefix: slptap
      gateway: 10.124.0.1/24
`

// waitPoolReady waits until GET /info shows group's pool with ready VMs
// and none filling, checking meanwhile that GET /nodes lists only the
// nodes named in nodes.
func waitPoolReady(t *testing.T, c *client.Client, group string, ready int, nodes ...string) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(5 * time.Minute)
	for {
		listed, err := c.ListNodes(ctx, client.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, n := range listed {
			names = append(names, n.Hostname)
		}
		if strings.Join(names, ",") != strings.Join(nodes, ",") {
			t.Fatalf("GET /nodes lists %v, want %v (pool vms are not nodes)", names, nodes)
		}
		info, err := c.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range info.Pools {
			if p.HostGroup == group && p.Ready == ready && p.Filling == 0 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("pool of %s never had %d ready: %+v", group, ready, info.Pools)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// ourTAPs lists the TUN/TAP devices of the pool group.
func ourTAPs(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("ip", "-o", "link", "show", "type", "tun").CombinedOutput()
	if err != nil {
		t.Fatalf("ip link: %v\n%s", err, out)
	}
	var taps []string
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) > 1 && strings.HasPrefix(f[1], "slptap") {
			taps = append(taps, strings.TrimSuffix(f[1], ":"))
		}
	}
	return taps
}

// TestWarmPool: a daemon keeps two VMs warm; a create takes one and
// answers exec under its node name with the request's userdata run; pool
// VMs are never listed and are counted in /metrics and GET /info; after a
// kill -9 the next daemon reclaims the pool VMs (the node survives) and
// fills again; a stop drains the pool, leaving no qemu, TAP or disk.
func TestWarmPool(t *testing.T) {
	testenv.RequireE2E(t)
	testenv.RequireRoot(t)
	d := startDaemonYAML(t, poolGroupYAML)
	c, ctx := d.client, context.Background()
	waitPoolReady(t, c, "wp", 2)
	if taps := ourTAPs(t); len(taps) != 2 {
		t.Fatalf("TAPs of a full pool: %v, want 2", taps)
	}

	node, err := c.CreateNode(ctx, "wp", api.CreateNodeRequest{
		Persistent: true, Tags: []string{"from=pool"},
		Userdata: "#!/bin/sh\nhostname > /root/userdata-saw\n",
	}, client.CreateOptions{Wait: "userdata", Timeout: 3 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if node.Hostname != "wp-1" || !strings.HasPrefix(node.IP, "10.124.0.") {
		t.Fatalf("created %+v, want wp-1 in 10.124.0.0/24", node)
	}
	root := u32(0)
	out, _, code := execIn(t, c, node.Hostname, &api.ExecRequest{Command: "hostname; cat /etc/hostname /root/userdata-saw; ip -4 -o addr show eth0", Shell: "/bin/sh", UID: root}, nil)
	lines := strings.Split(out, "\n")
	if code != 0 || len(lines) < 4 || lines[0] != "wp-1" || lines[1] != "wp-1" || lines[2] != "wp-1" || !strings.Contains(lines[3], strings.Split(node.IP, "/")[0]) {
		t.Fatalf("in the taken vm (exit %d):\n%s\nwant hostname wp-1 everywhere and address %s", code, out, node.IP)
	}
	if !pings(t, c, node.Hostname, "10.124.0.1") {
		t.Errorf("%s cannot ping its gateway", node.Hostname)
	}
	waitPoolReady(t, c, "wp", 2, "wp-1") // refilled, and never listed meanwhile

	resp := d.raw(t, http.MethodGet, "/metrics", nil, http.Header{}, nil)
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`slicer_warm_pool_vms{host_group="wp",state="ready"} 2`, `slicer_warm_pool_vms{host_group="wp",state="target"} 2`} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if out, code := d.cli(t, "", "info"); code != 0 || !strings.Contains(out, "Warm pool:       wp: 2 ready, 0 filling, target 2") {
		t.Errorf("slicer info (exit %d):\n%s", code, out)
	}

	// kill -9: the pool VMs are reclaimed, the node re-attached.
	d.cmd.Process.Kill()
	d.wait()
	d.start(filepath.Join(d.dataDir, "slicer.yaml"))
	c = d.client
	if out, _, code := execIn(t, c, node.Hostname, &api.ExecRequest{Command: "hostname"}, nil); code != 0 || strings.TrimSpace(out) != "wp-1" {
		t.Fatalf("after the crash, exec in wp-1: %q, exit %d", out, code)
	}
	waitPoolReady(t, c, "wp", 2, "wp-1")
	disks, _ := os.ReadDir(filepath.Join(d.dataDir, "disks"))
	var imgs []string
	for _, e := range disks {
		if strings.HasSuffix(e.Name(), ".img") {
			imgs = append(imgs, e.Name())
		}
	}
	// The node's disk keeps its pool name (wp-w1 or wp-w2); the pool's
	// VMs before the crash (two of wp-w1..wp-w3) are gone, the new ones
	// are wp-w4 and wp-w5.
	if len(imgs) != 3 || fmt.Sprint(imgs[1:]) != "[wp-w4.img wp-w5.img]" {
		t.Errorf("disks after the crash and refill: %v", imgs)
	}
	if procs := qemuProcesses(d.dataDir); len(procs) != 3 {
		t.Errorf("qemu processes after the crash and refill: %v, want the node's and two pool vms'", procs)
	}

	if _, err := c.DeleteNode(ctx, "wp", node.Hostname); err != nil {
		t.Fatal(err)
	}
	d.stop()
	d.assertNothingLeft(t)
	if taps := ourTAPs(t); len(taps) != 0 {
		t.Errorf("TAPs left after the stop: %v", taps)
	}
}

// TestTwentyParallelCreatesFromPool: twenty creates at once in a group
// that keeps four VMs warm all succeed, four of them taken from the pool
// and the rest booted, with twenty distinct names, each guest named as its
// node (the identity a taken pool VM is given), and nothing left once they
// are deleted and the daemon stops.
func TestTwentyParallelCreatesFromPool(t *testing.T) {
	testenv.RequireE2E(t)
	d := startDaemonYAML(t, `  - name: pp
    count: 0
    vcpu: 1
    ram_mb: 256
    storage_size: 512M
    warm: 4
`)
	c, ctx := d.client, context.Background()
	waitPoolReady(t, c, "pp", 4)
	const n = 20
	names := make(chan string, n)
	errs := make(chan error, n)
	for range n {
		go func() {
			node, err := c.CreateNode(ctx, "pp", api.CreateNodeRequest{}, client.CreateOptions{Wait: "agent", Timeout: 10 * time.Minute})
			if err != nil {
				errs <- err
				return
			}
			names <- node.Hostname
		}()
	}
	seen := map[string]bool{}
	for range n {
		select {
		case err := <-errs:
			t.Errorf("CreateNode: %v", err)
		case name := <-names:
			if seen[name] {
				t.Errorf("name %s given twice", name)
			}
			seen[name] = true
		}
	}
	for name := range seen {
		if out, _, code := execIn(t, c, name, &api.ExecRequest{Command: "hostname"}, nil); code != 0 || strings.TrimSpace(out) != name {
			t.Errorf("%s: the guest calls itself %q (exit %d)", name, strings.TrimSpace(out), code)
		}
		if _, err := c.DeleteNode(ctx, "pp", name); err != nil {
			t.Errorf("DeleteNode(%s): %v", name, err)
		}
	}
	d.stop()
	d.assertNothingLeft(t)
}
