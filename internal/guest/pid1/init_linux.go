// Package pid1 runs the agent as the guest's PID 1 in the initramfs: it
// mounts the kernel file systems, loads the modules, switches to the root
// disk, applies the system settings of the kernel command line
// (internal/guest/sysconf), then either serves the agent (internal/guest)
// on the channel and on the control socket while the reaper collects every
// child, until a signal or a fatal error ends the machine; or, when the
// image boots systemd, installs the agent as a systemd unit and hands PID 1
// to systemd (handoff.go), the unit running Service.
package pid1

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"time"

	"golang.org/x/sys/unix"

	"github.com/openslicer/openslicer/internal/guest"
	"github.com/openslicer/openslicer/internal/guest/sysconf"
)

const (
	loadOrderFile = "/lib/modules/load.order" // written by the image builder
	rootDisk      = "/dev/vda"
	newRoot       = "/newroot"
	rootDiskWait  = 10 * time.Second
	// killGrace is how long processes get to exit after SIGTERM at
	// shutdown before they are killed.
	killGrace = 3 * time.Second
)

// Run runs the agent as the guest's PID 1 in the initramfs: it mounts
// the kernel filesystems, loads the modules, mounts the root disk and
// switches to it, sets up the rest of the system, and serves the agent on
// the virtio-serial port while reaping orphans and waiting for a shutdown
// signal or the host's power request (power_linux.go). Every step is logged with its duration. Run never returns,
// since PID 1 exiting panics the kernel: a fatal error is logged and the
// machine powered off, and so is it when ctx ends.
func Run(ctx context.Context, log *slog.Logger) {
	// Notify before anything else: a signal Go does not hand to the program
	// ends it, and that would end the machine.
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, unix.SIGTERM, unix.SIGUSR1, unix.SIGUSR2, unix.SIGINT, unix.SIGHUP, unix.SIGQUIT)
	r := guest.NewReaper()
	go r.Run(ctx)

	if err := boot(log); err != nil {
		log.Error("init failed, powering off", "err", err)
		shutdown(log, r, unix.LINUX_REBOOT_CMD_POWER_OFF)
	}
	if prog := initFor(log); prog != "" {
		handOff(log, prog) // returns only if systemd could not take over
	}
	if err := linkAgentCommand("/proc/1/exe"); err != nil {
		log.Warn("link "+agentCommand, "err", err)
	}

	power := make(chan int, 1) // the host's power request (power_linux.go)
	srv := guest.NewInitServer(log, guest.Init{
		Reaper: r, SetClock: sysconf.SetClock, Power: powerFunc(power),
		SetIdentity: func(id sysconf.Identity) error { return sysconf.ApplyIdentity(id, "/") },
	})
	go func() {
		err := srv.ServeDevice(ctx, "")
		log.Error("agent stopped", "err", err)
	}()
	go func() {
		err := srv.ServeControl(ctx, guest.ControlSocket)
		log.Error("control socket stopped", "err", err)
	}()
	for {
		select {
		case <-ctx.Done():
			shutdown(log, r, unix.LINUX_REBOOT_CMD_POWER_OFF)
		case cmd := <-power:
			log.Info("shutting down", "asked_by", "host")
			shutdown(log, r, cmd)
		case sig := <-sigs:
			cmd, ok := shutdownCommand(sig)
			if !ok {
				log.Info("ignoring signal", "signal", sig.String())
				continue
			}
			log.Info("shutting down", "signal", sig.String())
			shutdown(log, r, cmd)
		}
	}
}

// shutdownCommand maps the signals busybox's reboot, halt and poweroff send
// to init to the reboot(2) command. Halt powers off too: a halted VM would
// only sit there. (QEMU runs with -no-reboot, so a restart ends the VM.)
func shutdownCommand(sig os.Signal) (int, bool) {
	switch sig {
	case unix.SIGTERM:
		return unix.LINUX_REBOOT_CMD_RESTART, true
	case unix.SIGUSR1, unix.SIGUSR2:
		return unix.LINUX_REBOOT_CMD_POWER_OFF, true
	}
	return 0, false
}

// boot runs the init steps in order; it returns the first fatal error.
func boot(log *slog.Logger) error {
	steps := []struct {
		name  string
		fatal bool
		run   func() error
	}{
		{"mount kernel filesystems", true, func() error { return mountAll(earlyMounts) }},
		{"load modules", false, func() error { return loadModules(loadOrderFile) }},
		{"wait for root disk", true, func() error { return sysconf.WaitForFile(rootDisk, rootDiskWait) }},
		{"mount root disk", true, func() error { return mountAll([]mountSpec{{rootDisk, newRoot, "ext4", 0, ""}}) }},
		{"switch root", true, switchRoot},
		{"mount runtime filesystems", false, func() error { return mountAll(lateMounts) }},
		{"set hostname", false, sysconf.SetHostname},
		{"add hostname to /etc/hosts", false, addHostname},
		{"bring up loopback", false, sysconf.LoopbackUp},
		{"configure network", false, sysconf.NetworkUp},
	}
	for _, st := range steps {
		start := time.Now()
		err := st.run()
		took := time.Since(start).Round(time.Microsecond)
		switch {
		case err == nil:
			log.Info("init", "step", st.name, "took", took)
		case st.fatal:
			return fmt.Errorf("%s: %w", st.name, err)
		default:
			log.Warn("init step failed, going on", "step", st.name, "took", took, "err", err)
		}
	}
	return nil
}

// mountSpec is one mount(2) call.
type mountSpec struct {
	source, target, fstype string
	flags                  uintptr
	data                   string
}

const noDevSuidExec = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC

// earlyMounts are mounted in the initramfs and moved into the new root.
var earlyMounts = []mountSpec{
	{"devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID, "mode=0755"},
	{"proc", "/proc", "proc", noDevSuidExec, ""},
	{"sysfs", "/sys", "sysfs", noDevSuidExec, ""},
}

// lateMounts are mounted in the new root.
var lateMounts = []mountSpec{
	{"devpts", "/dev/pts", "devpts", unix.MS_NOSUID | unix.MS_NOEXEC, "mode=0620,ptmxmode=0666"},
	{"tmpfs", "/dev/shm", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777"},
	{"tmpfs", "/run", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=0755"},
	{"tmpfs", "/tmp", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777"},
}

// mountAll mounts each of ms, creating its mount point; a target that is
// already mounted (EBUSY) is left as it is. It tries them all.
func mountAll(ms []mountSpec) error {
	var errs []error
	for _, m := range ms {
		if err := os.MkdirAll(m.target, 0o755); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := unix.Mount(m.source, m.target, m.fstype, m.flags, m.data); err != nil && !errors.Is(err, unix.EBUSY) {
			errs = append(errs, fmt.Errorf("mount %s on %s: %w", m.fstype, m.target, err))
		}
	}
	return errors.Join(errs...)
}

// loadModules loads the modules listed in the load-order file, in order.
// One that is already loaded (built in, or loaded twice) is fine; the rest
// are still tried after a failure.
func loadModules(orderFile string) error {
	data, err := os.ReadFile(orderFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, p := range parseLoadOrder(string(data)) {
		if err := loadModule(p); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func loadModule(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.FinitModule(int(f.Fd()), "", 0); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("load module %s: %w", path, err)
	}
	return nil
}

// switchRoot makes newRoot the root: it drops the initramfs files it knows
// to free their memory, moves the kernel filesystems over, and moves the
// new root onto / and chroots into it, as switch_root(8) does.
func switchRoot() error {
	_ = os.Remove("/init")
	_ = os.RemoveAll("/lib/modules")
	for _, m := range []string{"/dev", "/proc", "/sys"} {
		dst := newRoot + m
		if err := os.MkdirAll(dst, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(m, dst, "", unix.MS_MOVE, ""); err != nil {
			return fmt.Errorf("move %s to %s: %w", m, dst, err)
		}
	}
	if err := unix.Chdir(newRoot); err != nil {
		return err
	}
	if err := unix.Mount(newRoot, "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("move %s to /: %w", newRoot, err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("chroot: %w", err)
	}
	return unix.Chdir("/")
}

// shutdown ends the machine: every process gets SIGTERM, then SIGKILL if
// it is still there after killGrace; file systems are synced and the root
// remounted read-only; then reboot(2) with cmd. It never returns.
func shutdown(log *slog.Logger, r *guest.Reaper, cmd int) {
	_ = unix.Kill(-1, unix.SIGTERM)
	if !r.WaitChildren(killGrace) {
		log.Warn("processes still running after SIGTERM, killing them")
		_ = unix.Kill(-1, unix.SIGKILL)
		r.WaitChildren(time.Second)
	}
	unix.Sync()
	for _, m := range []string{"/dev/shm", "/dev/pts", "/tmp", "/run"} {
		_ = unix.Unmount(m, 0)
	}
	if err := unix.Mount("", "/", "", unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		log.Warn("remount / read-only", "err", err)
	}
	unix.Sync()
	err := unix.Reboot(cmd)
	log.Error("reboot", "err", err)
	for { // PID 1 must not return, and select{} could be taken for a deadlock
		time.Sleep(time.Hour)
	}
}
