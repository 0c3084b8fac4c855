package guest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/agent"
)

const (
	// maxFirstBoot bounds the first-boot request body.
	maxFirstBoot = 16 << 20
	// userdataShell runs userdata that has no "#!" line.
	userdataShell = "/bin/sh"
	// consolePrefix marks userdata's lines on the serial console.
	consolePrefix = "userdata: "
)

// guestPaths are the files first boot, health and stats use. NewServer sets
// the guest's; tests point them into a temporary directory.
type guestPaths struct {
	slicerDir   string // holds firstboot.json, userdata and the userdata-ran marker
	userdataLog string // userdata's output, appended
	console     string // userdata's output is copied here, line by line
	rootHome    string // userdata's working directory and HOME
	proc        string // procfs, for stats
	statfsRoot  string // the file system whose space stats reports
	secretsDir  string // holds the VM's secrets, one file each
}

func defaultPaths() guestPaths {
	return guestPaths{
		slicerDir:   "/etc/slicer",
		userdataLog: "/var/log/slicer-userdata.log",
		console:     "/dev/console",
		rootHome:    "/root",
		proc:        "/proc",
		statfsRoot:  "/",
		secretsDir:  "/run/slicer/secrets",
	}
}

func (p guestPaths) marker() string        { return filepath.Join(p.slicerDir, "userdata-ran") }
func (p guestPaths) userdataFile() string  { return filepath.Join(p.slicerDir, "userdata") }
func (p guestPaths) firstBootFile() string { return filepath.Join(p.slicerDir, "firstboot.json") }

// firstBootState makes first boot happen once per agent while the marker
// is not written yet.
type firstBootState struct {
	mu      sync.Mutex
	running bool
	runs    sync.WaitGroup // userdata runs until their marker is written
}

// firstBoot takes the host's first-boot data: PUT /v1/firstboot with a
// agent.FirstBoot body. It answers 204 once keys are installed and userdata is
// started (or once it found there was nothing to do).
func (s *Server) firstBoot(w http.ResponseWriter, r *http.Request) {
	var fb agent.FirstBoot
	if err := json.NewDecoder(io.LimitReader(r.Body, maxFirstBoot)).Decode(&fb); err != nil {
		agent.WriteError(w, fmt.Errorf("%w: decode first-boot data: %v", api.ErrInvalid, err))
		return
	}
	if err := s.applyFirstBoot(&fb); err != nil {
		agent.WriteError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// applyFirstBoot acts on fb unless first boot is done or under way: it
// records fb, installs the SSH keys, and starts userdata (or writes the
// marker at once when there is none).
func (s *Server) applyFirstBoot(fb *agent.FirstBoot) error {
	s.fb.mu.Lock()
	defer s.fb.mu.Unlock()
	if s.fb.running {
		s.log.Info("first boot: userdata is running already")
		return nil
	}
	switch _, err := os.Stat(s.paths.marker()); {
	case err == nil:
		s.log.Info("first boot: done already", "marker", s.paths.marker())
		return nil
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("check userdata marker: %w", err)
	}

	accounts, groups := s.readAccounts()
	user, err := firstBootUser(fb.DefaultUser, s.defaultUser(accounts, groups), accounts)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(s.paths.slicerDir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", s.paths.slicerDir, err)
	}
	record, err := json.Marshal(fb)
	if err != nil {
		return err
	}
	// Only userdata must not run twice. Without it, first boot is safe to
	// apply again (the keys are merged, the marker rewritten), so after a
	// crash that lost these files it is: they are written without the
	// syncs that cost a few host fsyncs each under emulated storage.
	durable := hasUserdata(fb.Userdata)
	if err := writeFileAtomic(s.paths.firstBootFile(), record, 0o600, nil, durable); err != nil {
		return fmt.Errorf("record first-boot data: %w", err)
	}
	if len(fb.SSHKeys) > 0 {
		if err := s.installSSHKeys(user, fb.SSHKeys, durable); err != nil {
			return err
		}
	}
	if !durable {
		s.log.Info("first boot: no userdata")
		return s.writeMarker(0, false)
	}
	if err := writeFileAtomic(s.paths.userdataFile(), []byte(fb.Userdata), 0o700, nil, true); err != nil {
		return fmt.Errorf("write userdata: %w", err)
	}
	s.fb.running = true
	s.fb.runs.Add(1)
	go s.runUserdata(fb.Userdata, user.Name)
	return nil
}

// installSSHKeys adds keys to user's ~/.ssh/authorized_keys, creating the
// directory (0700) and file (0600) owned by the user; durably (synced)
// when durable.
func (s *Server) installSSHKeys(user account, keys []string, durable bool) error {
	if user.Home == "" {
		return fmt.Errorf("install ssh keys for %q: the account has no home directory", user.Name)
	}
	dir := filepath.Join(user.Home, ".ssh")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("install ssh keys: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("install ssh keys: %w", err)
	}
	if err := chownAs(dir, &user); err != nil {
		return fmt.Errorf("install ssh keys: %w", err)
	}
	path := filepath.Join(dir, "authorized_keys")
	existing, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("install ssh keys: %w", err)
	}
	merged, added := mergeAuthorizedKeys(existing, keys)
	if err := writeFileAtomic(path, merged, 0o600, &user, durable); err != nil {
		return fmt.Errorf("install ssh keys: %w", err)
	}
	s.log.Info("first boot: ssh keys installed", "user", user.Name, "added", added)
	return nil
}

// runUserdata runs the userdata file to its end, then writes the marker.
func (s *Server) runUserdata(script, targetUser string) {
	defer s.fb.runs.Done()
	code := s.execUserdata(script, targetUser)
	if err := s.writeMarker(code, true); err != nil {
		s.log.Error("first boot: write userdata marker", "err", err)
	}
	s.fb.mu.Lock()
	s.fb.running = false
	s.fb.mu.Unlock()
}

// writeMarker records that userdata ran, with its exit code (durably:
// synced, when durable).
func (s *Server) writeMarker(code int, durable bool) error {
	if err := writeFileAtomic(s.paths.marker(), formatMarker(code), 0o644, nil, durable); err != nil {
		return fmt.Errorf("write userdata marker: %w", err)
	}
	return nil
}

// execUserdata runs userdata as the agent's user (root in a guest) in its
// own session, with its output appended to the userdata log and copied to
// the console, and returns its exit code. The code is returned once the
// process has exited and its output is drained, or drainGrace after the
// exit while a background process it left keeps the output open; that
// output is still copied for as long as it lasts.
func (s *Server) execUserdata(script, targetUser string) int {
	out := s.openUserdataOutput()
	fmt.Fprintf(out, "--- userdata started at %s\n", time.Now().UTC().Format(time.RFC3339))
	code, drained := s.startUserdata(script, targetUser, out)
	if drained != nil {
		select {
		case <-drained:
		case <-time.After(drainGrace):
			s.log.Info("first boot: userdata left a process holding its output open")
		}
	}
	fmt.Fprintf(out, "--- userdata exited with code %d\n", code)
	s.log.Info("first boot: userdata exited", "code", code)
	if drained == nil {
		out.Close()
		return code
	}
	go func() { <-drained; out.Close() }()
	return code
}

// startUserdata starts userdata with its output on a pipe that is copied to
// out, and waits for it to exit. drained is closed once the pipe has
// reached EOF; it is nil when the process did not start.
func (s *Server) startUserdata(script, targetUser string, out io.Writer) (code int, drained <-chan struct{}) {
	argv := userdataArgv(script, s.paths.userdataFile(), userdataShell)
	pr, pw, err := os.Pipe()
	if err != nil {
		fmt.Fprintf(out, "--- userdata could not start: %v\n", err)
		return exitInternal, nil
	}
	cmd := &exec.Cmd{
		Path: argv[0], Args: argv,
		Env:    userdataEnv(targetUser, s.paths.rootHome),
		Dir:    s.paths.rootHome,
		Stdout: pw, Stderr: pw,
		// Its own session, apart from the agent's; the user is the
		// agent's own (no Credential), which is root in a guest.
		SysProcAttr: &syscall.SysProcAttr{Setsid: true},
	}
	wait, err := s.starter.start(cmd)
	pw.Close()
	if err != nil {
		pr.Close()
		s.log.Warn("first boot: start userdata", "err", err)
		fmt.Fprintf(out, "--- userdata could not start: %v\n", err)
		return startErrorCode(err), nil
	}
	s.log.Info("first boot: userdata started", "pid", cmd.Process.Pid)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer pr.Close()
		_, _ = io.Copy(out, pr)
	}()
	return statusOf(wait()).Code, done
}

// openUserdataOutput opens the userdata log and the console; what cannot
// be opened is logged and left out.
func (s *Server) openUserdataOutput() *userdataOutput {
	o := &userdataOutput{}
	if err := os.MkdirAll(filepath.Dir(s.paths.userdataLog), 0o755); err != nil {
		s.log.Warn("first boot: create userdata log directory", "err", err)
	}
	f, err := os.OpenFile(s.paths.userdataLog, os.O_WRONLY|os.O_APPEND|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		s.log.Warn("first boot: open userdata log", "err", err)
	} else {
		o.log = f
	}
	c, err := os.OpenFile(s.paths.console, os.O_WRONLY|os.O_APPEND|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		s.log.Warn("first boot: open console", "err", err)
	} else {
		o.console = c
		o.lines = &lineWriter{w: c, prefix: consolePrefix}
	}
	return o
}

// userdataOutput is where userdata's output goes: the log file as it
// comes, the console in whole lines. Write never fails, and is safe for
// concurrent use; writes after Close are dropped.
type userdataOutput struct {
	mu      sync.Mutex
	log     *os.File
	console *os.File
	lines   *lineWriter
	closed  bool
}

func (o *userdataOutput) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return len(p), nil
	}
	if o.log != nil {
		_, _ = o.log.Write(p)
	}
	if o.lines != nil {
		_, _ = o.lines.Write(p)
	}
	return len(p), nil
}

func (o *userdataOutput) Close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return nil
	}
	o.closed = true
	if o.lines != nil {
		o.lines.Flush()
	}
	if o.log != nil {
		_ = o.log.Sync()
	}
	closeFiles(o.log, o.console)
	return nil
}

// writeFileAtomic replaces path with data in one step: a temporary file in
// the same directory is written, given perm (and owner, when not nil) and
// renamed over path. When durable, the file is synced before the rename
// and the directory after it.
func writeFileAtomic(path string, data []byte, perm os.FileMode, owner *account, durable bool) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	err = writeTemp(f, data, perm, owner, durable)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if !durable {
		return nil
	}
	return syncDir(dir)
}

func writeTemp(f *os.File, data []byte, perm os.FileMode, owner *account, durable bool) error {
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if err := chownAs(f.Name(), owner); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if !durable {
		return nil
	}
	return f.Sync()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// chownAs gives path to owner. An agent that is not root (tests,
// development) can only own files itself, so it changes nothing then, as
// it runs commands as itself.
func chownAs(path string, owner *account) error {
	if owner == nil || os.Geteuid() != 0 {
		return nil
	}
	return os.Lchown(path, int(owner.UID), int(owner.GID))
}

// userdataStatus reads the marker: whether userdata ran, and its exit code
// when the marker holds one.
func (s *Server) userdataStatus() (ran bool, code *int) {
	data, err := os.ReadFile(s.paths.marker())
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			s.log.Warn("read userdata marker", "err", err)
		}
		return false, nil
	}
	return true, parseMarker(data)
}
