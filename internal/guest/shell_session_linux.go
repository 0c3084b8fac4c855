package guest

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/api/shellframe"
)

// shellSession is a running shell on a PTY and, once upgraded, the host
// stream it talks to.
type shellSession struct {
	log    *slog.Logger
	pid    int           // the shell: session leader, and its process group
	ptmx   *os.File      // the PTY's master side
	exited chan struct{} // closed once the shell has exited and been reaped

	conn net.Conn  // the host stream
	in   io.Reader // reads conn, starting with what the HTTP server buffered
}

// run connects the shell to the host until the session ends: PTY output
// goes out as data frames, and the host's frames come in as keystrokes and
// resizes. When the shell exits, its output is drained, a session-close
// frame sent and the stream closed. When the host asks for a shutdown,
// goes away, or ctx ends, the shell is hung up first.
func (ss *shellSession) run(ctx context.Context) {
	inputDone := make(chan struct{})
	go func() {
		defer close(inputDone)
		ss.pumpInput()
	}()
	outputDone := make(chan struct{})
	go func() {
		defer close(outputDone)
		ss.pumpOutput()
	}()

	select {
	case <-ss.exited:
	case <-inputDone:
		ss.hangUp()
	case <-ctx.Done():
		ss.hangUp()
	}

	// Output the shell wrote is in the PTY already; what keeps it open
	// past drainGrace (a background job) is cut off. A host that stopped
	// reading is given as long.
	deadline := time.Now().Add(drainGrace)
	_ = ss.ptmx.SetReadDeadline(deadline)
	_ = ss.conn.SetWriteDeadline(deadline)
	<-outputDone
	if _, err := ss.conn.Write(shellframe.New(api.ShellSessionClose, nil)); err != nil {
		ss.log.Debug("send shell session close", "pid", ss.pid, "err", err)
	}
	ss.ptmx.Close()
	ss.conn.Close()
	_ = ss.conn.SetReadDeadline(time.Now()) // a stream's Close leaves its reads waiting
	<-inputDone
}

// pumpInput applies the host's frames until the host asks for a shutdown
// or its stream ends: data is written to the PTY, a window size sets the
// PTY's size; heartbeats and unknown types are ignored.
func (ss *shellSession) pumpInput() {
	for {
		f, err := shellframe.Read(ss.in)
		if err != nil {
			ss.log.Debug("shell input ended", "pid", ss.pid, "err", err)
			return
		}
		switch f.Type() {
		case api.ShellData:
			if _, err := ss.ptmx.Write(f.Payload()); err != nil {
				ss.log.Debug("write to shell pty", "pid", ss.pid, "err", err)
				return
			}
		case api.ShellWindowSize:
			cols, rows, ok := shellframe.WindowSize(f.Payload())
			if !ok {
				ss.log.Debug("bad shell window size", "pid", ss.pid, "payload", f.Payload())
				continue
			}
			if err := setWindowSize(ss.ptmx, cols, rows); err != nil {
				ss.log.Debug("resize shell pty", "pid", ss.pid, "err", err)
			}
		case api.ShellShutdown, api.ShellSessionClose:
			return
		}
	}
}

// pumpOutput sends what the PTY outputs as data frames until the PTY has
// no writer left (EIO), its read deadline passes or the host stream fails.
func (ss *shellSession) pumpOutput() {
	buf := make([]byte, chunkSize)
	for {
		n, err := ss.ptmx.Read(buf)
		if n > 0 {
			if _, werr := ss.conn.Write(shellframe.New(api.ShellData, buf[:n])); werr != nil {
				ss.log.Debug("send shell output", "pid", ss.pid, "err", werr)
				return
			}
		}
		if err != nil {
			return // EIO once the shell and everything it left behind closed the terminal
		}
	}
}

// hangUp hangs up the shell as a terminal hang-up does: SIGHUP to the
// shell's process group and to the job in the foreground, then SIGKILL to
// both if the shell has not exited after hangupGrace. It returns once the
// shell has exited.
func (ss *shellSession) hangUp() {
	groups := []int{ss.pid}
	if fg := foregroundGroup(ss.ptmx); fg > 0 && fg != ss.pid {
		groups = append(groups, fg)
	}
	signalGroups(groups, unix.SIGHUP)
	t := time.NewTimer(hangupGrace)
	defer t.Stop()
	select {
	case <-ss.exited:
		return
	case <-t.C:
	}
	signalGroups(groups, unix.SIGKILL)
	<-ss.exited
}

// kill ends a shell that never got a host: it kills its process group,
// waits for it and closes the PTY.
func (ss *shellSession) kill() {
	signalGroups([]int{ss.pid}, unix.SIGKILL)
	<-ss.exited
	ss.ptmx.Close()
}

// signalGroups sends sig to each process group.
func signalGroups(groups []int, sig unix.Signal) {
	for _, g := range groups {
		_ = unix.Kill(-g, sig)
	}
}
