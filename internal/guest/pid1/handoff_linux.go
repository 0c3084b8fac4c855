package pid1

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/openslicer/openslicer/internal/guest"
	"github.com/openslicer/openslicer/internal/guest/sysconf"
)

// initFor returns the program PID 1 hands over to ("" for none), from the
// kernel command line and the image; a refused choice is logged.
func initFor(log *slog.Logger) string {
	cmdline, _ := os.ReadFile("/proc/cmdline")
	param, _ := sysconf.KernelParam(string(cmdline), initParam)
	target, err := filepath.EvalSymlinks(sbinInit)
	if err != nil {
		target = ""
	}
	p, err := chooseInit(param, target, func(p string) bool {
		st, err := os.Stat(p)
		return err == nil && st.Mode().IsRegular()
	})
	if err != nil {
		log.Warn("init", "err", err)
	}
	return p
}

// handOff installs the agent as a systemd unit and execs systemd (prog)
// as PID 1. It returns only if that fails, having logged why; the agent
// then stays PID 1. Nothing may have been started yet: the exec ends
// every goroutine of this process.
func handOff(log *slog.Logger, prog string) {
	if err := installAgentUnit("/"); err != nil {
		log.Error("install the agent's systemd unit: the agent stays PID 1", "err", err)
		return
	}
	if err := linkAgentCommand(agentBinary); err != nil {
		log.Warn("link "+agentCommand, "err", err)
	}
	log.Info("handing PID 1 to systemd", "init", prog)
	unix.Sync()
	err := unix.Exec(prog, []string{prog}, os.Environ())
	log.Error("exec systemd: the agent stays PID 1", "init", prog, "err", err)
}

// installAgentUnit copies this binary to agentBinary and writes the
// agent's unit, enabled, under root.
func installAgentUnit(root string) error {
	if err := copyExecutable("/proc/self/exe", filepath.Join(root, agentBinary)); err != nil {
		return err
	}
	unit := filepath.Join(root, unitDir, unitName)
	if err := writeIfChanged(unit, []byte(agentUnit()), 0o644); err != nil {
		return err
	}
	return enableUnit(filepath.Join(root, unitWants, unitName), filepath.Join("..", unitName))
}

// agentCommand is where programs in the guest find the agent binary
// (Slicer's SDK runs "/usr/local/bin/slicer-agent upload …" for chunked
// copies; "slicer-agent secrets sync" is run by people).
const agentCommand = "/usr/local/bin/slicer-agent"

// linkAgentCommand points agentCommand at the running agent's binary,
// target: /proc/1/exe while the agent is PID 1 (the initramfs's binary,
// no copy), agentBinary under systemd. A regular file there (min's own
// copy, or an image's) is left alone; a symlink, ours from an earlier
// boot, is replaced.
func linkAgentCommand(target string) error {
	st, err := os.Lstat(agentCommand)
	switch {
	case err == nil && st.Mode()&fs.ModeSymlink == 0:
		return nil
	case err == nil:
		if cur, _ := os.Readlink(agentCommand); cur == target {
			return nil
		}
	case !errors.Is(err, fs.ErrNotExist):
		return err
	}
	return enableUnit(agentCommand, target)
}

// copyExecutable copies src to dst (0755) through a temporary file renamed
// into place.
func copyExecutable(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	tmp := dst + ".tmp"
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, dst)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("copy the agent to %s: %w", dst, err)
	}
	return nil
}

// writeIfChanged writes data to name unless it holds it already, through
// a temporary file renamed into place and synced.
func writeIfChanged(name string, data []byte, mode fs.FileMode) error {
	if old, err := os.ReadFile(name); err == nil && bytes.Equal(old, data) {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		return err
	}
	tmp := name + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, name)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}

// enableUnit makes the symlink link → target (as systemctl enable does
// for a unit), replacing whatever else is there.
func enableUnit(link, target string) error {
	if cur, err := os.Readlink(link); err == nil && cur == target {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		return err
	}
	if err := os.Remove(link); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return os.Symlink(target, link)
}

// addHostname puts the hostname in /etc/hosts (sysconf.Hosts).
func addHostname() error {
	name, err := os.Hostname()
	if err != nil || name == "" || name == "(none)" {
		return err
	}
	const hostsFile = "/etc/hosts"
	data, err := os.ReadFile(hostsFile)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	out := sysconf.Hosts(string(data), "", name)
	if out == string(data) {
		return nil
	}
	return writeIfChanged(hostsFile, []byte(out), 0o644)
}

// Service runs the agent as the systemd unit PID 1 installed before it
// handed over (`slicer-agent service`): the agent's routes on the channel
// and the control socket, with the setters init would lend it, but its
// processes started and waited for by itself (systemd reaps the orphans).
// It returns when ctx ends or either listener fails.
func Service(ctx context.Context, log *slog.Logger) error {
	srv := guest.NewInitServer(log, guest.Init{
		SetClock: sysconf.SetClock,
		// Not PID 1: a power request signals systemd (power_linux.go),
		// which stops its units, this one last, and powers off.
		Power:       powerFunc(nil),
		SetIdentity: func(id sysconf.Identity) error { return sysconf.ApplyIdentity(id, "/") },
	})
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 2)
	go func() { errc <- fmt.Errorf("agent channel: %w", srv.ServeDevice(ctx, "")) }()
	go func() { errc <- fmt.Errorf("control socket: %w", srv.ServeControl(ctx, guest.ControlSocket)) }()
	err := <-errc
	cancel()
	<-errc
	return err
}
