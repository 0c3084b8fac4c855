// Command slicer-bench measures, in one run on this machine:
//
//	(a) raw QEMU boot of the min image's kernel and initramfs until the guest
//	    init prints its first line: the floor any daemon pays;
//	(b) POST /hostgroup/{g}/nodes?wait=agent until the response, through a
//	    real daemon and the public client;
//	(b') the same create for the debian image (systemd as PID 1, the agent
//	    a systemd unit), when it is in the image cache: its floor is the
//	    same (a), since every image boots min's kernel and initramfs;
//	(c) exec of `true` on a ready VM;
//	(d)-(i) 64 MiB through the bare agent channel each way (a VM started
//	    without the daemon, the agent's channel probes), then copied into
//	    and out of a daemon's VM with cp-v1, and through a port-forward
//	    tunnel; see copy.go;
//	(p) pairs of: a raw boot, a cold create, a template create, a pool
//	    create and a hot fork, each until an exec answers, reported as
//	    medians of the ratios within each pair; see paired.go;
//
// and prints the median and p95 of each, the ratio b/a (how much the
// daemon adds on top of the floor), and copy throughput as a share of the
// channel's. `make bench` runs it.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/client"
	"github.com/openslicer/openslicer/internal/daemon"
	"github.com/openslicer/openslicer/internal/hypervisor"
	"github.com/openslicer/openslicer/internal/hypervisor/qemu"
	"github.com/openslicer/openslicer/internal/image"
	"github.com/openslicer/openslicer/internal/vm"
)

func main() {
	boots := flag.Int("boots", 10, "samples of (a) and (b)")
	execs := flag.Int("execs", 30, "samples of (c)")
	copies := flag.Int("copies", 3, "samples of (d)-(g)")
	imageDir := flag.String("image-dir", "/var/lib/slicer/images", "image cache")
	agentBin := flag.String("agent", "bin/slicer-agent", "slicer-agent binary")
	accel := flag.String("accel", "", "accelerator mode auto|kvm|tcg (default $SLICER_ACCEL, else auto)")
	debianBoots := flag.Int("debian-boots", -1, "samples of (b') for the debian image (default: as -boots when it is built, 0 skips)")
	pairs := flag.Int("pairs", 5, "pairs of (p): floor, cold, template, pool, hot fork (0 skips)")
	flag.Parse()
	if *debianBoots < 0 {
		*debianBoots = 0
		if _, err := os.Stat(filepath.Join(*imageDir, "oci", "layouts", "debian", "index.json")); err == nil {
			*debianBoots = *boots
		} else {
			fmt.Fprintln(os.Stderr, "debian image not built (slicer image build debian): (b') skipped")
		}
	}
	if err := run(*boots, *execs, *copies, *debianBoots, *pairs, *imageDir, *agentBin, *accel); err != nil {
		fmt.Fprintln(os.Stderr, "slicer-bench:", err)
		os.Exit(1)
	}
}

func run(boots, execs, copies, debianBoots, pairs int, imageDir, agentBin, accelFlag string) error {
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	tmp, err := os.MkdirTemp("", "slicer-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	img, err := (&image.Builder{Dir: imageDir, AgentBinary: agentBin, Log: log, Progress: os.Stderr}).Min(ctx)
	if err != nil {
		return err
	}
	// The accelerator the daemon will pick, decided the same way (and
	// with the same cache) so (a) and (d)-(e) run as its VMs do.
	mode, err := qemu.AccelModeFrom(accelFlag, os.Getenv(qemu.AccelEnv))
	if err != nil {
		return err
	}
	qb := qemu.New(log)
	qb.CacheDir = imageDir
	dec, err := qb.DecideAccel(ctx, mode, img.Kernel)
	if err != nil {
		return err
	}
	raw, err := measureRawBoot(ctx, img, filepath.Join(tmp, "raw"), boots, dec.Accel)
	if err != nil {
		return fmt.Errorf("raw boot: %w", err)
	}
	var channel []throughput
	if copies > 0 {
		if channel, err = measureChannel(ctx, img, filepath.Join(tmp, "channel"), copies, dec.Accel, log); err != nil {
			return fmt.Errorf("agent channel: %w", err)
		}
	}
	d := daemonRun{tmp: tmp, imageDir: imageDir, agentBin: agentBin, accelMode: mode, log: log, img: img, accel: dec.Accel,
		boots: boots, debianBoots: debianBoots, execs: execs, copies: copies, pairs: pairs}
	creates, debCreates, execTimes, copied, pairedRes, err := d.measure(ctx)
	if err != nil {
		return err
	}

	fmt.Printf("host: %s/%s, %d CPUs; guest: QEMU microvm, 1 vCPU, 256 MiB, min image\n", runtime.GOOS, runtime.GOARCH, runtime.NumCPU())
	fmt.Printf("accelerator: %s (mode %s: %s; decided in %s)\n", dec.Accelerator, dec.Mode, dec.Reason, ms(dec.Took))
	fmt.Printf("%-44s %6s %10s %10s\n", "measure", "n", "median", "p95")
	row := func(name string, d []time.Duration) {
		fmt.Printf("%-44s %6d %10s %10s\n", name, len(d), ms(median(d)), ms(p95(d)))
	}
	row("(a) raw qemu boot to first init line", raw)
	row("(b) create ?wait=agent until response", creates)
	if len(debCreates) > 0 {
		row("(b') create, debian image (systemd)", debCreates)
	}
	row("(c) exec `true` on a ready VM", execTimes)
	fmt.Printf("ratio b/a (median): %.2f\n", float64(median(creates))/float64(median(raw)))
	if len(debCreates) > 0 {
		fmt.Printf("ratio b'/a (median): %.2f\n", float64(median(debCreates))/float64(median(raw)))
	}
	fmt.Printf("\n%-44s %6s %10s %10s\n", "copy (MiB/s, higher is better)", "n", "median", "min")
	for _, t := range append(channel, copied...) {
		fmt.Printf("%-44s %6d %10.1f %10.1f\n", t.name, len(t.samples), medianF(t.samples), slices.Min(t.samples))
	}
	if len(channel) == 2 && len(copied) == 4 {
		fmt.Printf("cp in / channel in: %.2f; cp out / channel out: %.2f (medians)\n",
			medianF(copied[0].samples)/medianF(channel[0].samples), medianF(copied[1].samples)/medianF(channel[1].samples))
	}
	pairedRes.print()
	return nil
}

// measureRawBoot boots the image with the same QEMU arguments the daemon
// uses, without the daemon, and times the guest init's first console line.
func measureRawBoot(ctx context.Context, img *image.Image, dir string, n int, accel qemu.Accel) ([]time.Duration, error) {
	var out []time.Duration
	for i := range n {
		d, err := rawBoot(ctx, img, filepath.Join(dir, fmt.Sprint(i)), accel)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

// rawBoot times one raw boot (bootOnce) of the machine rawSpec makes in
// the run directory run, removed after.
func rawBoot(ctx context.Context, img *image.Image, run string, accel qemu.Accel) (time.Duration, error) {
	if err := os.MkdirAll(run, 0o700); err != nil {
		return 0, err
	}
	defer os.RemoveAll(run)
	spec, err := rawSpec(ctx, img, run)
	if err != nil {
		return 0, err
	}
	return bootOnce(ctx, spec, accel)
}

// rawSpec is the machine the daemon would start for a 1-vCPU 256 MiB
// VM, with its disk cloned into run.
func rawSpec(ctx context.Context, img *image.Image, run string) (hypervisor.Spec, error) {
	disk := filepath.Join(run, "disk.img")
	if err := image.Clone(ctx, img.RootFS, disk, 0); err != nil {
		return hypervisor.Spec{}, err
	}
	return hypervisor.Spec{
		ID: run, Name: "bench", VCPUs: 1, MemoryBytes: 256 << 20,
		Kernel: img.Kernel, Initrd: img.Initrd, Cmdline: vm.GuestCmdline("bench", "", "", ""),
		Disks: []hypervisor.Disk{{Path: disk, Format: "raw"}}, RunDir: run,
		ConsoleLog: filepath.Join(run, "console.txt"),
	}, nil
}

// initMarker starts the first line the agent prints as PID 1 (its first
// init step, logged once kernel filesystems are mounted).
const initMarker = "msg=init "

func bootOnce(ctx context.Context, spec hypervisor.Spec, accel qemu.Accel) (time.Duration, error) {
	args, err := qemu.Args(spec, accel)
	if err != nil {
		return 0, err
	}
	args = foreground(args)
	start := time.Now()
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", args...)
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	deadline := start.Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		data, _ := os.ReadFile(spec.ConsoleLog)
		if strings.Contains(string(data), initMarker) {
			return time.Since(start), nil
		}
		time.Sleep(2 * time.Millisecond)
	}
	return 0, fmt.Errorf("no %q on the console within 2m", initMarker)
}

// foreground drops -daemonize and -pidfile so the bench owns the process.
func foreground(args []string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		switch args[i] {
		case "-daemonize":
			continue
		case "-pidfile":
			i++
			continue
		}
		out = append(out, args[i])
	}
	return out
}

// daemonRun is what the daemon phases measure, and with what.
type daemonRun struct {
	tmp, imageDir, agentBin, accelMode string
	log                                *slog.Logger
	img                                *image.Image
	accel                              qemu.Accel
	boots, debianBoots, execs, copies  int
	pairs                              int
}

// measure starts a daemon in this process and times creates and execs
// through the public client over its unix socket, then runs the paired
// phase (paired.go).
func (d daemonRun) measure(ctx context.Context) (creates, debCreates, execTimes []time.Duration, copied []throughput, p paired, err error) {
	tmp, imageDir, agentBin, accelMode, log := d.tmp, d.imageDir, d.agentBin, d.accelMode, d.log
	boots, debianBoots, execs, copies := d.boots, d.debianBoots, d.execs, d.copies
	data := filepath.Join(tmp, "data")
	sock := filepath.Join(data, "api.sock")
	cfg := filepath.Join(tmp, "bench.yaml")
	const group = "  - name: %s\n    count: 0\n    vcpu: 1\n    ram_mb: 256\n    storage_size: 1G\n"
	yaml := "config:\n  host_groups:\n" + fmt.Sprintf(group, "bench")
	if debianBoots > 0 {
		yaml += fmt.Sprintf(group, "benchdeb") + "    image: debian\n"
	}
	if d.pairs > 0 {
		yaml += pairedGroups
	}
	yaml += fmt.Sprintf("  image: min\n  hypervisor: qemu\n  graceful_shutdown: false\n  api:\n    bind_address: %q\n", sock)
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		return nil, nil, nil, nil, p, err
	}
	dctx, stop := context.WithCancel(ctx)
	ready := make(chan string, 1)
	errc := make(chan error, 1)
	go func() {
		errc <- daemon.Run(dctx, daemon.Options{
			ConfigPath: cfg, DataDir: data, ImageDir: imageDir, AgentBinary: agentBin, Accel: accelMode,
			Out: io.Discard, Log: log, Ready: func(addr string) { ready <- addr },
		})
	}()
	defer func() {
		stop()
		if derr := <-errc; derr != nil && err == nil {
			err = derr
		}
	}()
	select {
	case <-ready:
	case err := <-errc:
		return nil, nil, nil, nil, p, fmt.Errorf("daemon: %w", err)
	}
	c := client.New(sock, "")

	for range debianBoots {
		start := time.Now()
		node, err := c.CreateNode(ctx, "benchdeb", api.CreateNodeRequest{}, client.CreateOptions{Wait: "agent", Timeout: 5 * time.Minute})
		if err != nil {
			return nil, nil, nil, nil, p, fmt.Errorf("create debian: %w", err)
		}
		debCreates = append(debCreates, time.Since(start))
		if _, err := c.DeleteNode(ctx, "benchdeb", node.Hostname); err != nil {
			return nil, nil, nil, nil, p, err
		}
	}
	var host string
	for i := range boots {
		start := time.Now()
		node, err := c.CreateNode(ctx, "bench", api.CreateNodeRequest{}, client.CreateOptions{Wait: "agent", Timeout: 2 * time.Minute})
		if err != nil {
			return nil, nil, nil, nil, p, fmt.Errorf("create: %w", err)
		}
		creates = append(creates, time.Since(start))
		if i == boots-1 {
			host = node.Hostname
			break
		}
		if _, err := c.DeleteNode(ctx, "bench", node.Hostname); err != nil {
			return nil, nil, nil, nil, p, err
		}
	}
	for range execs {
		start := time.Now()
		res, err := c.ExecBuffered(ctx, host, &api.ExecRequest{Command: "true", UID: new(uint32)})
		if err != nil || res.ExitCode != 0 {
			return nil, nil, nil, nil, p, fmt.Errorf("exec true: %+v %v", res, err)
		}
		execTimes = append(execTimes, time.Since(start))
	}
	if copies > 0 {
		if copied, err = measureCopy(ctx, c, host, tmp, copies); err != nil {
			return nil, nil, nil, nil, p, err
		}
	}
	if _, err := c.DeleteNode(ctx, "bench", host); err != nil {
		return nil, nil, nil, nil, p, err
	}
	if d.pairs > 0 {
		if p, err = measurePaired(ctx, c, d.img, filepath.Join(tmp, "paired"), d.accel, d.pairs); err != nil {
			return nil, nil, nil, nil, p, fmt.Errorf("paired phase: %w", err)
		}
	}
	return creates, debCreates, execTimes, copied, p, nil
}

func medianF(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func median(d []time.Duration) time.Duration { return quantile(d, 0.5) }
func p95(d []time.Duration) time.Duration    { return quantile(d, 0.95) }

// quantile returns the nearest-rank quantile q of d.
func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.999999) - 1
	return s[max(0, min(i, len(s)-1))]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }
