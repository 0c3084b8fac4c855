package main

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/client"
	"github.com/openslicer/openslicer/internal/hypervisor/qemu"
	"github.com/openslicer/openslicer/internal/image"
)

// The paired phase (p): the create figures of warm pools, snapshot
// templates and hot forks, each as a ratio taken within one pair, so that
// drift on a shared machine moves both sides of a ratio alike. Each pair
// runs one after the other: a raw boot (the floor, as (a)); a cold create
// until the VM answers an exec of true; the same for a create of a
// snapshot group (a template clone); the same for a create from a warm
// pool of one, once the pool is ready again; and a hot fork of a running
// VM of a hot_fork group (memory commit, fork with wait=agent, the
// child's exec; the source's own create is not timed). Every VM, and the
// commit, is deleted before the next step.

// pairedGroups are the host groups the paired phase uses, besides bench.
const pairedGroups = `  - name: ptpl
    count: 0
    vcpu: 1
    ram_mb: 256
    storage_size: 1G
    snapshot: true
  - name: ppool
    count: 0
    vcpu: 1
    ram_mb: 256
    storage_size: 1G
    warm: 1
  - name: phot
    count: 0
    vcpu: 1
    ram_mb: 256
    storage_size: 1G
    hot_fork: true
`

// paired holds the phase's samples, one of each per pair.
type paired struct {
	floor, cold, template, pool, hot []time.Duration
}

// measurePaired runs pairs pairs (see above) against the daemon behind c.
func measurePaired(ctx context.Context, c *client.Client, img *image.Image, dir string, accel qemu.Accel, pairs int) (paired, error) {
	var p paired
	// The group's first create builds the template: outside the pairs.
	if _, err := createExec(ctx, c, "ptpl"); err != nil {
		return p, fmt.Errorf("build the template: %w", err)
	}
	for i := range pairs {
		floor, err := rawBoot(ctx, img, filepath.Join(dir, fmt.Sprint(i)), accel)
		if err != nil {
			return p, fmt.Errorf("raw boot: %w", err)
		}
		cold, err := createExec(ctx, c, "bench")
		if err != nil {
			return p, err
		}
		tpl, err := createExec(ctx, c, "ptpl")
		if err != nil {
			return p, err
		}
		if err := waitPoolReady(ctx, c, "ppool"); err != nil {
			return p, err
		}
		pool, err := createExec(ctx, c, "ppool")
		if err != nil {
			return p, err
		}
		hot, err := hotFork(ctx, c, "phot")
		if err != nil {
			return p, err
		}
		p.floor, p.cold, p.template = append(p.floor, floor), append(p.cold, cold), append(p.template, tpl)
		p.pool, p.hot = append(p.pool, pool), append(p.hot, hot)
	}
	return p, nil
}

// createExec creates a VM of group (wait=agent) and has it answer an exec
// of true: it returns how long both took. The VM is deleted after.
func createExec(ctx context.Context, c *client.Client, group string) (time.Duration, error) {
	start := time.Now()
	host, err := createAnswering(ctx, c, group)
	if err != nil {
		return 0, err
	}
	took := time.Since(start)
	_, err = c.DeleteNode(ctx, group, host)
	return took, err
}

// createAnswering creates a VM of group (wait=agent) and has it answer an
// exec of true; it returns the VM's name.
func createAnswering(ctx context.Context, c *client.Client, group string) (string, error) {
	node, err := c.CreateNode(ctx, group, api.CreateNodeRequest{}, client.CreateOptions{Wait: "agent", Timeout: 3 * time.Minute})
	if err != nil {
		return "", fmt.Errorf("create in %s: %w", group, err)
	}
	return node.Hostname, execTrue(ctx, c, node.Hostname)
}

// hotFork creates a running VM of group (not timed), then times a memory
// commit of it, a fork of the commit (wait=agent) and the child's exec of
// true. The child, the source and the commit are deleted after.
func hotFork(ctx context.Context, c *client.Client, group string) (time.Duration, error) {
	src, err := createAnswering(ctx, c, group)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	commit, err := c.CommitVMWithOptions(ctx, src, api.CommitVMRequest{Mode: api.CommitModeMemory})
	if err != nil {
		return 0, fmt.Errorf("memory commit: %w", err)
	}
	child, err := c.ForkCommittedVM(ctx, commit.CommitID, api.ForkVMRequest{}, client.ForkOptions{Wait: client.WaitAgent, Timeout: 3 * time.Minute})
	if err != nil {
		return 0, fmt.Errorf("fork: %w", err)
	}
	if err := execTrue(ctx, c, child.Hostname); err != nil {
		return 0, err
	}
	took := time.Since(start)
	for _, h := range []string{child.Hostname, src} {
		if _, err := c.DeleteNode(ctx, group, h); err != nil {
			return 0, err
		}
	}
	_, err = c.DeleteCommit(ctx, commit.CommitID)
	return took, err
}

func execTrue(ctx context.Context, c *client.Client, host string) error {
	res, err := c.ExecBuffered(ctx, host, &api.ExecRequest{Command: "true"})
	if err != nil || res.ExitCode != 0 {
		return fmt.Errorf("exec true in %s: %+v %v", host, res, err)
	}
	return nil
}

// waitPoolReady waits until group's warm pool has a VM ready and none
// filling (GET /info), so that a pool create does not meet a refill.
func waitPoolReady(ctx context.Context, c *client.Client, group string) error {
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		info, err := c.Info(ctx)
		if err != nil {
			return err
		}
		for _, p := range info.Pools {
			if p.HostGroup == group && p.Ready > 0 && p.Filling == 0 {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("warm pool of %s not ready within 5m", group)
}

// ratios returns num[i]/den[i] for each pair.
func ratios(num, den []time.Duration) []float64 {
	out := make([]float64, len(num))
	for i := range num {
		out[i] = float64(num[i]) / float64(den[i])
	}
	return out
}

// print writes the phase's figures: medians of the per-pair ratios.
func (p paired) print() {
	if len(p.cold) == 0 {
		return
	}
	fmt.Printf("\npaired (p), %d pairs: medians of the per-pair ratios\n", len(p.cold))
	fmt.Printf("%-58s %8.2f\n", "cold create until exec / raw boot", medianF(ratios(p.cold, p.floor)))
	fmt.Printf("%-58s %8.3f  (target <= 0.15)\n", "template create until exec / cold create", medianF(ratios(p.template, p.cold)))
	fmt.Printf("%-58s %8.3f  (p50 %s; target <= 50 ms)\n", "pool create until exec / cold create", medianF(ratios(p.pool, p.cold)), ms(median(p.pool)))
	fmt.Printf("%-58s %8.3f  (target <= 0.5)\n", "hot fork (hot_fork group) until child exec / cold create", medianF(ratios(p.hot, p.cold)))
}
