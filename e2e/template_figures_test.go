package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/client"
	"github.com/openslicer/openslicer/internal/testenv"
)

// TestTemplateFigures measures, with a real daemon, and logs (it asserts
// nothing about speed or memory): a create from a snapshot template until
// its agent is ready (identity included) against a cold create of the same
// size, in alternating pairs, as the median of the per-pair ratios; then
// the memory of N template clones against N cold-booted VMs, each set up
// and idle, as the sum of the PSS of their QEMU processes
// (/proc/PID/smaps_rollup), and its ratio. It runs only with
// SLICER_E2E_FIGURES=1; SLICER_E2E_FIGURES_PAIRS (default 5) and
// SLICER_E2E_FIGURES_CLONES (default 10) scale it.
func TestTemplateFigures(t *testing.T) {
	testenv.RequireE2E(t)
	if os.Getenv("SLICER_E2E_FIGURES") != "1" {
		t.Skip("set SLICER_E2E_FIGURES=1 to measure snapshot templates")
	}
	pairs, clones := envInt("SLICER_E2E_FIGURES_PAIRS", 5), envInt("SLICER_E2E_FIGURES_CLONES", 10)
	groups := strings.ReplaceAll(snapshotGroupYAML, "%s", "tf") +
		strings.ReplaceAll(strings.ReplaceAll(snapshotGroupYAML, "%s", "cf"), "    snapshot: true\n", "")
	d := startDaemonYAML(t, groups)
	c, ctx := d.client, context.Background()
	wait := client.CreateOptions{Wait: "agent", Timeout: 3 * time.Minute}
	create := func(group string) (string, time.Duration) {
		start := time.Now()
		resp, err := c.CreateNode(ctx, group, api.CreateNodeRequest{}, wait)
		if err != nil {
			t.Fatal(err)
		}
		return resp.Hostname, time.Since(start)
	}
	remove := func(group, host string) {
		if _, err := c.DeleteNode(ctx, group, host); err != nil {
			t.Fatal(err)
		}
	}
	h, first := create("tf") // builds the template
	remove("tf", h)
	t.Logf("first create of the snapshot group (template boot, capture, restore): %s", first.Round(time.Millisecond))

	var colds, tpls, ratios []time.Duration
	for range pairs {
		hc, cold := create("cf")
		remove("cf", hc)
		ht, tpl := create("tf")
		remove("tf", ht)
		colds, tpls = append(colds, cold), append(tpls, tpl)
		ratios = append(ratios, time.Duration(1000*tpl/cold))
	}
	t.Logf("cold create wait=agent: median %s of %d", median(colds).Round(time.Millisecond), pairs)
	t.Logf("template create wait=agent (identity included): median %s; per-pair ratio template/cold median %.3f",
		median(tpls).Round(time.Millisecond), float64(median(ratios))/1000)

	pss := func(group string) (int64, []string) {
		var hosts []string
		for range clones {
			h, _ := create(group)
			hosts = append(hosts, h)
		}
		time.Sleep(5 * time.Second) // let them settle
		var sum int64
		for _, h := range hosts {
			sum += qemuPSS(t, filepath.Join(d.dataDir, "run", h))
		}
		return sum, hosts
	}
	tplPSS, hosts := pss("tf")
	for _, h := range hosts {
		remove("tf", h)
	}
	coldPSS, hosts := pss("cf")
	for _, h := range hosts {
		remove("cf", h)
	}
	t.Logf("PSS of %d idle VMs (256 MiB, 1 vCPU): template clones %s, cold-booted %s; ratio %.3f",
		clones, mib(tplPSS), mib(coldPSS), float64(tplPSS)/float64(coldPSS))
	d.assertNothingLeft(t)
}

// qemuPSS is the PSS, in bytes, of the qemu process whose command line
// names runDir's pidfile.
func qemuPSS(t *testing.T, runDir string) int64 {
	t.Helper()
	pid, err := os.ReadFile(filepath.Join(runDir, "qemu.pid"))
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join("/proc", strings.TrimSpace(string(pid)), "smaps_rollup"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "Pss:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no Pss in smaps_rollup of %s", runDir)
	return 0
}
