package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/client"
	"github.com/openslicer/openslicer/internal/testenv"
)

// TestWarmPoolFigures measures, with a real daemon, and logs (it asserts
// nothing about speed), in alternating pairs so that drift on a shared
// machine moves both halves of a pair alike:
//
//   - a cold create (group pc, no pool) and a create from a warm pool of
//     one (group pw, same size), each timed from the request until its
//     first exec (`true`) has answered: exec-ready;
//   - the per-pair ratio pool/cold, and its median;
//   - the first and the tenth exec after each create.
//
// Between pairs the VMs are deleted and the pool refilled, untimed. It
// runs only with SLICER_E2E_FIGURES=1; SLICER_E2E_FIGURES_PAIRS (default
// 10) sets the number of pairs.
func TestWarmPoolFigures(t *testing.T) {
	testenv.RequireE2E(t)
	if os.Getenv("SLICER_E2E_FIGURES") != "1" {
		t.Skip("set SLICER_E2E_FIGURES=1 to measure warm pools")
	}
	pairs := envInt("SLICER_E2E_FIGURES_PAIRS", 10)
	d := startDaemonYAML(t, `  - name: pc
    count: 0
    vcpu: 1
    ram_mb: 256
    storage: image
    storage_size: 1G
  - name: pw
    count: 0
    vcpu: 1
    ram_mb: 256
    storage: image
    storage_size: 1G
    warm: 1
`)
	c, ctx := d.client, context.Background()
	wait := client.CreateOptions{Wait: "agent", Timeout: 3 * time.Minute}
	exec := func(host string) time.Duration {
		start := time.Now()
		if _, _, code := execIn(t, c, host, &api.ExecRequest{Command: "true"}, nil); code != 0 {
			t.Fatalf("exec true in %s: exit %d", host, code)
		}
		return time.Since(start)
	}
	// run creates a VM in group and returns the time until its first exec
	// answered, that first exec's and the tenth's.
	run := func(group string) (answered, ready, first, tenth time.Duration) {
		start := time.Now()
		resp, err := c.CreateNode(ctx, group, api.CreateNodeRequest{}, wait)
		if err != nil {
			t.Fatal(err)
		}
		answered = time.Since(start)
		first = exec(resp.Hostname)
		ready = time.Since(start)
		for range 8 {
			exec(resp.Hostname)
		}
		tenth = exec(resp.Hostname)
		if _, err := c.DeleteNode(ctx, group, resp.Hostname); err != nil {
			t.Fatal(err)
		}
		return answered, ready, first, tenth
	}
	var cold, pool, ratios, coldFirst, coldTenth, poolFirst, poolTenth, poolAnswered []time.Duration
	for range pairs {
		waitPoolReady(t, c, "pw", 1)
		_, cr, cf, ct := run("pc")
		waitPoolReady(t, c, "pw", 1)
		pa, pr, pf, pt := run("pw")
		poolAnswered = append(poolAnswered, pa)
		cold, pool = append(cold, cr), append(pool, pr)
		coldFirst, coldTenth = append(coldFirst, cf), append(coldTenth, ct)
		poolFirst, poolTenth = append(poolFirst, pf), append(poolTenth, pt)
		ratios = append(ratios, time.Duration(1000*pr/cr)) // thousandths, to share median
	}
	ms := func(ds []time.Duration) string { return median(ds).Round(100 * time.Microsecond).String() }
	t.Logf("%d pairs, 1 vCPU 256 MiB guests", pairs)
	t.Logf("cold create until exec-ready: p50 %s", ms(cold))
	t.Logf("pool create until exec-ready: p50 %s (min %s, max %s)", ms(pool), slicesMin(pool), slicesMax(pool))
	t.Logf("pool create until its answer (wait=agent): p50 %s", ms(poolAnswered))
	t.Logf("per-pair ratio pool/cold: median %.3f", float64(median(ratios))/1000)
	t.Logf("after a cold create: first exec p50 %s, tenth exec p50 %s", ms(coldFirst), ms(coldTenth))
	t.Logf("after a pool create: first exec p50 %s, tenth exec p50 %s", ms(poolFirst), ms(poolTenth))
	// The daemon's own account of each take (debug log).
	logText, _ := os.ReadFile(filepath.Join(d.dataDir, "daemon.log"))
	for _, l := range strings.Split(string(logText), "\n") {
		if strings.Contains(l, "given its identity") || strings.Contains(l, "created from the warm pool") {
			t.Log(l[strings.Index(l, "msg="):])
		}
	}
	waitPoolReady(t, c, "pw", 1)
	d.stop()
	d.assertNothingLeft(t)
}

func slicesMin(ds []time.Duration) time.Duration {
	m := ds[0]
	for _, d := range ds {
		m = min(m, d)
	}
	return m.Round(100 * time.Microsecond)
}

func slicesMax(ds []time.Duration) time.Duration {
	m := ds[0]
	for _, d := range ds {
		m = max(m, d)
	}
	return m.Round(100 * time.Microsecond)
}
