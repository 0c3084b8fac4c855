package guest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/agent"
)

// hangupGrace is how long a hung-up shell has to exit before its process
// group is killed.
const hangupGrace = 2 * time.Second

// routeShell registers the routes that switch protocols: the shell and
// the port forward.
func (s *Server) routeShell(mux *http.ServeMux) {
	mux.HandleFunc("GET "+agent.PathShell, s.shell)
	mux.HandleFunc("GET "+agent.PathForward, s.forward)
}

// shell runs an interactive shell on a PTY: GET /v1/shell?uid=&gid=&shell=&cwd=
// asking to upgrade to agent.ShellProtocol. Everything that can go wrong before
// the shell runs is a JSON error; then the answer is 101 and the stream
// carries shell frames both ways until the shell exits (the agent sends
// api.ShellSessionClose and closes) or the host hangs up (api.ShellShutdown
// or the end of its stream).
func (s *Server) shell(w http.ResponseWriter, r *http.Request) {
	if !wantsUpgrade(r, agent.ShellProtocol) {
		agent.WriteError(w, upgradeError(agent.PathShell, agent.ShellProtocol))
		return
	}
	req, err := parseShellQuery(r.URL.Query())
	if err != nil {
		agent.WriteError(w, err)
		return
	}
	sess, err := s.startShell(req)
	if err != nil {
		agent.WriteError(w, err)
		return
	}
	conn, in, err := upgrade(w, agent.ShellProtocol)
	if err != nil {
		s.log.Warn("switch to the shell protocol", "err", err)
		sess.kill()
		return
	}
	sess.conn, sess.in = conn, in
	sess.run(r.Context())
}

// startShell plans and starts the shell of req on a new PTY, as a session
// leader with the PTY as its controlling terminal.
func (s *Server) startShell(req shellRequest) (*shellSession, error) {
	sp, err := s.plan(&api.ExecRequest{Command: req.Shell, UID: req.UID, GID: req.GID, Cwd: req.Cwd})
	if err != nil {
		return nil, err
	}
	shell, err := s.pickShell(req.Shell, sp)
	if err != nil {
		return nil, err
	}
	if !isDir(sp.Dir) {
		return nil, fmt.Errorf("%w: cwd %q is not a directory", api.ErrInvalid, sp.Dir)
	}
	env := append(sp.Env, "SHELL="+shell, "TERM="+defaultTerm)
	ptmx, tty, err := pty.Open()
	if err != nil {
		return nil, fmt.Errorf("open a pty: %w", err)
	}
	defer tty.Close() // the shell has its own copies
	if err := setWindowSize(ptmx, 80, 24); err != nil {
		ptmx.Close()
		return nil, fmt.Errorf("size the pty: %w", err)
	}
	cmd := &exec.Cmd{
		Path: shell, Args: []string{loginArgv0(shell)}, Env: env, Dir: sp.Dir,
		Stdin: tty, Stdout: tty, Stderr: tty,
		SysProcAttr: &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0, Credential: credential(sp)},
	}
	wait, err := s.starter.start(cmd)
	if err != nil {
		ptmx.Close()
		return nil, startShellError(shell, sp.Dir, err)
	}
	sess := &shellSession{log: s.log, pid: cmd.Process.Pid, ptmx: ptmx, exited: make(chan struct{})}
	go func() {
		wait()
		close(sess.exited)
	}()
	return sess, nil
}

// pickShell finds the shell to run: the one asked for, else the user's
// login shell when it exists, else fallbackShell. A shell asked for that
// is not there is an api.ErrInvalid error.
func (s *Server) pickShell(asked string, sp procSpec) (string, error) {
	pathList := envValue(sp.Env, "PATH")
	if asked != "" {
		p, err := lookPath(asked, pathList)
		if err == nil {
			err = isExecutable(p)
		}
		if err != nil {
			return "", fmt.Errorf("%w: shell %q: %v", api.ErrInvalid, asked, err)
		}
		return p, nil
	}
	passwd, _ := os.ReadFile(filepath.Join(s.etcDir, "passwd")) // missing: no login shell
	if sh := loginShell(passwd, sp.UID); sh != "" && isExecutable(sh) == nil {
		return sh, nil
	}
	return fallbackShell, nil
}

// isExecutable reports, as an error, why p cannot be run.
func isExecutable(p string) error {
	fi, err := os.Stat(p)
	switch {
	case err != nil:
		return err
	case !fi.Mode().IsRegular() || fi.Mode()&0o111 == 0:
		return fmt.Errorf("%s is not an executable file", p)
	}
	return nil
}

// startShellError classes an error starting the shell in dir: a missing
// or forbidden shell or directory is the request's fault.
func startShellError(shell, dir string, err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) || errors.Is(err, exec.ErrNotFound) {
		return fmt.Errorf("%w: start shell %s in %s: %v", api.ErrInvalid, shell, dir, err)
	}
	return fmt.Errorf("start shell %s in %s: %w", shell, dir, err)
}

// upgrade answers 101 Switching Protocols to protocol and takes the
// stream over from the HTTP server. Reads must go through the returned
// reader: it first returns what the host sent after the request and the
// server has buffered already. (The server's own buffered reader must not
// be used: at EOF it cancels the request's context, golang/go#32314.)
func upgrade(w http.ResponseWriter, protocol string) (net.Conn, io.Reader, error) {
	w.Header().Set("Connection", "Upgrade")
	w.Header().Set("Upgrade", protocol)
	w.WriteHeader(http.StatusSwitchingProtocols)
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return nil, nil, err
	}
	buffered, _ := brw.Reader.Peek(brw.Reader.Buffered())
	return conn, io.MultiReader(bytes.NewReader(bytes.Clone(buffered)), conn), nil
}

// setWindowSize sets the terminal size of the PTY behind ptmx. It works on
// the raw descriptor (pty.Setsize would call Fd, which makes the file
// blocking, so that Close and deadlines no longer interrupt a Read).
func setWindowSize(ptmx *os.File, cols, rows uint16) error {
	return fdControl(ptmx, func(fd int) error {
		return unix.IoctlSetWinsize(fd, unix.TIOCSWINSZ, &unix.Winsize{Col: cols, Row: rows})
	})
}

// foregroundGroup is the process group in the foreground of the PTY behind
// ptmx, or 0 when it cannot be told.
func foregroundGroup(ptmx *os.File) int {
	var pgid int
	_ = fdControl(ptmx, func(fd int) error {
		var err error
		pgid, err = unix.IoctlGetInt(fd, unix.TIOCGPGRP)
		return err
	})
	return pgid
}

// fdControl runs fn on f's descriptor without taking it out of the
// runtime's poller.
func fdControl(f *os.File, fn func(fd int) error) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}
