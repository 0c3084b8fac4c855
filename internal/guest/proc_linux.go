package guest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/openslicer/openslicer/api"
)

const (
	// chunkSize is the most output one frame carries.
	chunkSize = 32 << 10
	// drainGrace is how long output is still read after the process has
	// exited while something else (a background descendant) keeps its
	// pipes open. Output the process itself wrote is already in the pipe
	// and is read at once; only the descendant's output is cut off.
	drainGrace = 2 * time.Second
)

// starter starts processes and waits for them. Outside PID 1 that is
// exec.Cmd.Wait (plainStarter); as PID 1 the init's reaper collects every
// child, so processes are started through it. The exec code is the same
// either way.
type starter interface {
	// start starts cmd; wait blocks until it exits and returns its status.
	start(cmd *exec.Cmd) (wait func() syscall.WaitStatus, err error)
}

type plainStarter struct{}

func (plainStarter) start(cmd *exec.Cmd) (func() syscall.WaitStatus, error) {
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return func() syscall.WaitStatus {
		_ = cmd.Wait() // a non-zero exit is an error here; the status says it all
		ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
		return ws
	}, nil
}

// statusOf turns a wait status into the exit code and signal name a client
// sees. A process killed by a signal reports 128+signal, as shells do.
func statusOf(ws syscall.WaitStatus) exitStatus {
	if ws.Signaled() {
		return exitStatus{Code: 128 + int(ws.Signal()), Signal: unix.SignalName(ws.Signal())}
	}
	return exitStatus{Code: ws.ExitStatus()}
}

// process is a started command: the parent's ends of its pipes, and its
// exit status once it has exited.
type process struct {
	pid     int
	started time.Time
	stdout  *os.File
	stderr  *os.File
	stdin   *os.File // nil unless stdin was asked for

	exited chan struct{} // closed once status and ended are set
	status exitStatus
	ended  time.Time
}

// startOptions say how a process is started.
type startOptions struct {
	stdin bool // stdin on a pipe; otherwise /dev/null
	// detach starts it in a session of its own, so no terminal or process
	// group of the agent reaches it (background execs); otherwise it gets
	// a process group of its own.
	detach bool
}

// startProcess starts sp with stdout and stderr on pipes, as opt says. It
// goes through s.starter, so that as PID 1 the init's reaper collects it.
func (s *Server) startProcess(sp procSpec, opt startOptions) (*process, error) {
	path, err := lookPath(sp.Argv[0], envValue(sp.Env, "PATH"))
	if err != nil {
		return nil, err
	}
	attr := &syscall.SysProcAttr{Setpgid: true, Credential: credential(sp)}
	if opt.detach {
		attr = &syscall.SysProcAttr{Setsid: true, Credential: credential(sp)}
	}
	cmd := &exec.Cmd{Path: path, Args: sp.Argv, Env: sp.Env, Dir: sp.Dir, SysProcAttr: attr}
	pp, err := openPipes(opt.stdin)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = pp.outW, pp.errW
	if opt.stdin {
		cmd.Stdin = pp.inR
	}
	wait, err := s.starter.start(cmd)
	closeFiles(pp.outW, pp.errW, pp.inR) // the child has its copies
	if err != nil {
		closeFiles(pp.outR, pp.errR, pp.inW)
		return nil, err
	}
	p := &process{
		pid: cmd.Process.Pid, started: time.Now().UTC(),
		stdout: pp.outR, stderr: pp.errR, stdin: pp.inW,
		exited: make(chan struct{}),
	}
	go func() {
		st := statusOf(wait())
		p.status, p.ended = st, time.Now().UTC()
		close(p.exited)
	}()
	return p, nil
}

// credential is who the process runs as. An agent that is not root (tests,
// development) can only run processes as itself, so it sets nothing then.
func credential(sp procSpec) *syscall.Credential {
	if euid := os.Geteuid(); euid != 0 && sp.UID == uint32(euid) && sp.GID == uint32(os.Getegid()) {
		return nil
	}
	return &syscall.Credential{Uid: sp.UID, Gid: sp.GID, Groups: sp.Groups}
}

// killOnCancel kills the process group when ctx ends (the caller hung up);
// the returned stop disarms it.
func (p *process) killOnCancel(ctx context.Context) (stop func() bool) {
	return context.AfterFunc(ctx, func() { _ = unix.Kill(-p.pid, unix.SIGKILL) })
}

// chunk is a piece of the process's output.
type chunk struct {
	stream string // api.FrameStdout or api.FrameStderr
	data   []byte
}

// pump reads stdout and stderr until both are drained, sends their chunks to
// out and closes it. In text mode a chunk never ends inside a UTF-8
// sequence. It closes the read ends when done.
func (p *process) pump(text bool, out chan<- chunk) {
	var wg sync.WaitGroup
	for _, s := range []struct {
		f    *os.File
		name string
	}{{p.stdout, api.FrameStdout}, {p.stderr, api.FrameStderr}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			readChunks(s.f, s.name, text, out)
		}()
	}
	drained := make(chan struct{})
	go p.abandonAfterExit(drained)
	wg.Wait()
	close(drained)
	p.stdout.Close()
	p.stderr.Close()
	close(out)
}

// abandonAfterExit stops the readers drainGrace after the process has
// exited if its pipes are still open then.
func (p *process) abandonAfterExit(drained <-chan struct{}) {
	select {
	case <-drained:
		return
	case <-p.exited:
	}
	t := time.NewTimer(drainGrace)
	defer t.Stop()
	select {
	case <-drained:
	case <-t.C:
		now := time.Now()
		_ = p.stdout.SetReadDeadline(now)
		_ = p.stderr.SetReadDeadline(now)
	}
}

// readChunks reads f until EOF (or an error) and sends what it reads to out
// as chunks of stream.
func readChunks(f *os.File, stream string, text bool, out chan<- chunk) {
	buf := make([]byte, chunkSize)
	held := 0 // bytes of an incomplete UTF-8 sequence kept at the front of buf
	for {
		n, err := f.Read(buf[held:])
		data := buf[:held+n]
		var rest []byte
		if text && err == nil {
			data, rest = splitUTF8(data)
		}
		if len(data) > 0 {
			out <- chunk{stream: stream, data: bytes.Clone(data)}
		}
		held = copy(buf, rest)
		if err != nil {
			return
		}
	}
}

// copyStdin copies the request body into the process's stdin and closes it
// at the end of the body, or once the process stops reading.
func copyStdin(dst *os.File, src io.Reader) error {
	_, err := io.Copy(dst, src)
	if cerr := dst.Close(); err == nil && !errors.Is(cerr, os.ErrClosed) {
		err = cerr
	}
	return err
}

// pipes are the process's stdio pipes; the parent keeps the R ends of
// stdout and stderr and the W end of stdin.
type pipes struct {
	outR, outW, errR, errW, inR, inW *os.File
}

func openPipes(withStdin bool) (*pipes, error) {
	var p pipes
	var err error
	if p.outR, p.outW, err = os.Pipe(); err != nil {
		return nil, err
	}
	if p.errR, p.errW, err = os.Pipe(); err != nil {
		closeFiles(p.outR, p.outW)
		return nil, err
	}
	if withStdin {
		if p.inR, p.inW, err = os.Pipe(); err != nil {
			closeFiles(p.outR, p.outW, p.errR, p.errW)
			return nil, err
		}
	}
	return &p, nil
}

// closeFiles closes the non-nil files of fs.
func closeFiles(fs ...*os.File) {
	for _, f := range fs {
		if f != nil {
			f.Close()
		}
	}
}
