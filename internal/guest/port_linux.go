package guest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/openslicer/openslicer/internal/agent"
	"github.com/openslicer/openslicer/internal/agent/channel"
)

// sysVirtioPorts is where the kernel lists virtio-serial ports by name.
const sysVirtioPorts = "/sys/class/virtio-ports"

// openRetry is how often opening the channel, or checking whether the host
// has connected, is retried; it bounds how late the agent notices a host.
const openRetry = 20 * time.Millisecond

// ServeDevice serves the agent on the host channel at path until ctx ends,
// one yamux session per host connection: when the host goes away the
// channel is closed and opened again for the next. path is a character
// device (a virtio-serial port), or for development a unix socket, which
// is dialled; empty means the virtio-serial port named channel.PortName. It
// returns only when ctx ends.
func (s *Server) ServeDevice(ctx context.Context, path string) error {
	for {
		conn, name, err := s.openChannel(ctx, path)
		if err != nil {
			return err
		}
		s.log.Info("agent channel open", "path", name)
		err = s.ServeConn(ctx, conn)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, errReleased) {
			// Closed long enough for the host to see it (it polls the
			// port's state): the machine is saved with the agent waiting
			// for its next host.
			s.log.Info("released by the host, reopening the channel", "path", name, "after", agent.ReleaseQuiet)
			if err := sleepCtx(ctx, agent.ReleaseQuiet); err != nil {
				return err
			}
			continue
		}
		s.log.Info("host went away, reopening the channel", "path", name, "err", err)
	}
}

// openChannel opens the channel once a host is there, retrying until then
// or until ctx ends. Each distinct error is logged once.
func (s *Server) openChannel(ctx context.Context, path string) (io.ReadWriteCloser, string, error) {
	t := time.NewTicker(openRetry)
	defer t.Stop()
	logged := ""
	for {
		conn, name, err := openChannelOnce(path)
		if f, ok := conn.(*os.File); ok && err == nil {
			err = waitHost(ctx, f, t.C)
			if err != nil {
				f.Close()
				return nil, "", err
			}
		}
		if err == nil {
			return conn, name, nil
		}
		if msg := err.Error(); msg != logged {
			s.log.Info("agent channel not ready, retrying", "err", err)
			logged = msg
		}
		select {
		case <-ctx.Done():
			return nil, "", ctx.Err()
		case <-t.C:
		}
	}
}

func openChannelOnce(path string) (io.ReadWriteCloser, string, error) {
	if path == "" {
		p, err := findPort(sysVirtioPorts, "/dev", channel.PortName)
		if err != nil {
			return nil, "", err
		}
		path = p
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, path, err
	}
	if fi.Mode().Type() == fs.ModeSocket {
		c, err := net.Dial("unix", path)
		return c, path, err
	}
	// The port supports poll, so the file is non-blocking and Close
	// interrupts a pending Read, which ending a yamux session relies on.
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, path, err
	}
	return f, path, nil
}

// waitHost waits, checking at each tick, until the host end of the port f
// is connected. Until then the port polls as POLLHUP and reads return EOF
// at once (seen with QEMU 7.2 and Linux 6.1: the open itself succeeds), so
// a session started earlier would end straight away. Files that do not
// report POLLHUP (not a virtio port) pass at once.
func waitHost(ctx context.Context, f *os.File, tick <-chan time.Time) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	for {
		hup := false
		if cerr := rc.Control(func(fd uintptr) {
			fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			n, err := unix.Poll(fds, 0)
			hup = err == nil && n > 0 && fds[0].Revents&unix.POLLHUP != 0
		}); cerr != nil {
			return cerr
		}
		if !hup {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick:
		}
	}
}

// findPort returns the device node (in devDir) of the virtio-serial port
// called name, as listed under sysDir.
func findPort(sysDir, devDir, name string) (string, error) {
	entries, err := os.ReadDir(sysDir)
	if err != nil {
		return "", fmt.Errorf("find virtio-serial port %q: %w", name, err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(sysDir, e.Name(), "name"))
		if err == nil && strings.TrimSpace(string(b)) == name {
			return filepath.Join(devDir, e.Name()), nil
		}
	}
	return "", fmt.Errorf("find virtio-serial port %q: not in %s", name, sysDir)
}

// sleepCtx waits for d, or returns ctx's error when it ends first.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
