package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/client"
	"github.com/openslicer/openslicer/internal/network"
)

// Shared by every test of one run: binaries built once, and the min image
// cache, built by the first daemon and reused by the rest.
var (
	binDir   string
	imageDir string
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if os.Getenv("SLICER_E2E") != "1" {
		return m.Run() // every test skips through testenv.RequireE2E
	}
	tmp, err := os.MkdirTemp("", "slicer-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(tmp)
	binDir, imageDir = filepath.Join(tmp, "bin"), filepath.Join(tmp, "images")
	if err := build(binDir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

func build(dir string) error {
	for _, b := range []struct{ out, pkg string }{
		{"slicer", "../cmd/slicer"}, {"slicer-agent", "../cmd/slicer-agent"},
	} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, b.out), b.pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %v\n%s", b.pkg, err, out)
		}
	}
	return nil
}

// daemon is one running `slicer up`.
type daemon struct {
	t       *testing.T
	dataDir string
	socket  string
	token   string
	cmd     *exec.Cmd
	log     *os.File
	client  *client.Client
	// netns, when set, is the network namespace the daemon runs in.
	netns string
	// exited receives the daemon's exit status once (see wait).
	exited chan error
	// args are more flags for `slicer up`, env more environment, both
	// used by every start; defaultPaths runs it in dataDir without
	// --data-dir (Slicer's documented paths).
	args         []string
	env          []string
	defaultPaths bool
}

// daemonSpec is what startDaemonWith starts.
type daemonSpec struct {
	groups   string // the host_groups list, YAML
	extra    string // more keys under config:, indented two spaces
	graceful bool   // graceful_shutdown (false elsewhere: stops kill at once)
	noAuth   bool   // api.auth.enabled: false
	args     []string
	env      []string
	netns    string
	// defaultPaths: no --data-dir, run in the data dir (socket, disks and
	// state there; VM sockets in /run/slicer/<id>, logs in /var/log/slicer).
	defaultPaths bool
}

// groupYAML is a host group with a small footprint for tests.
const groupYAML = `  - name: %s
    count: 0
    vcpu: 2
    ram_mb: 512
    storage: image
    storage_size: 1G
`

// startDaemon starts a daemon with one host group per name, listening on a
// unix socket in its own data dir with auth on. It is stopped at cleanup.
func startDaemon(t *testing.T, groups ...string) *daemon {
	t.Helper()
	var b strings.Builder
	for _, g := range groups {
		fmt.Fprintf(&b, groupYAML, g)
	}
	return startDaemonYAML(t, b.String())
}

// startDaemonYAML is startDaemon with the host_groups list given as YAML.
func startDaemonYAML(t *testing.T, groups string) *daemon {
	t.Helper()
	return startDaemonIn(t, "", groups)
}

// startDaemonIn is startDaemonYAML with the daemon in the network
// namespace at netns ("" for the test's own).
func startDaemonIn(t *testing.T, netns, groups string) *daemon {
	t.Helper()
	return startDaemonWith(t, daemonSpec{groups: groups, netns: netns})
}

// startDaemonWith starts the daemon spec describes.
func startDaemonWith(t *testing.T, spec daemonSpec) *daemon {
	t.Helper()
	dir := t.TempDir()
	d := &daemon{t: t, dataDir: dir, socket: filepath.Join(dir, "api.sock"), netns: spec.netns,
		args: spec.args, env: spec.env, defaultPaths: spec.defaultPaths}
	var b strings.Builder
	b.WriteString("config:\n  host_groups:\n" + spec.groups + spec.extra)
	fmt.Fprintf(&b, "  image: min\n  hypervisor: qemu\n  graceful_shutdown: %t\n  api:\n    bind_address: %q\n    auth:\n      enabled: %t\n",
		spec.graceful, d.socket, !spec.noAuth)
	cfg := filepath.Join(dir, "slicer.yaml")
	if err := os.WriteFile(cfg, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	d.start(cfg)
	t.Cleanup(func() {
		d.stop()
		// Persistent VMs outlive their daemon by design: a test that failed
		// before deleting them must not leave them running.
		for _, pid := range qemuProcesses(dir) {
			if n, err := strconv.Atoi(pid); err == nil {
				syscall.Kill(n, syscall.SIGKILL)
			}
		}
	})
	return d
}

func (d *daemon) start(cfg string) {
	t := d.t
	t.Helper()
	logf, err := os.OpenFile(filepath.Join(d.dataDir, "daemon.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	d.log = logf
	args := []string{"up", cfg, "--image-dir", imageDir, "--debug"}
	if !d.defaultPaths {
		args = append(args, "--data-dir", d.dataDir)
	}
	d.cmd = exec.Command(filepath.Join(binDir, "slicer"), append(args, d.args...)...)
	d.cmd.Dir, d.cmd.Env = d.dataDir, append(os.Environ(), d.env...)
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	if err := network.InNetNS(d.netns, d.cmd.Start); err != nil {
		t.Fatal(err)
	}
	d.exited = make(chan error, 1)
	go func(cmd *exec.Cmd) { d.exited <- cmd.Wait() }(d.cmd)
	// The first daemon of a run builds the image: allow minutes.
	deadline := time.Now().Add(10 * time.Minute)
	for {
		tok, err := os.ReadFile(filepath.Join(d.dataDir, "auth", "token"))
		if d.defaultPaths || err == nil && len(tok) > 0 {
			d.token = strings.TrimSpace(string(tok))
			d.client = client.New(d.socket, d.token)
			if _, err := d.client.Info(context.Background()); err == nil {
				return
			}
		}
		select {
		case err := <-d.exited:
			d.cmd = nil
			d.dumpLog()
			t.Fatalf("daemon exited while starting: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			d.dumpLog()
			t.Fatalf("daemon did not come up within 10m")
		}
	}
}

// wait waits for the daemon process to exit (after a kill, or a shutdown
// asked over the API) and returns its exit status.
func (d *daemon) wait() error {
	err := <-d.exited
	d.cmd = nil
	d.log.Close()
	return err
}

// stop sends SIGTERM and waits for the daemon to exit.
func (d *daemon) stop() {
	if d.cmd == nil || d.cmd.Process == nil {
		return
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-d.exited:
		if err != nil {
			d.t.Errorf("daemon exited with %v", err)
			d.dumpLog()
		}
	case <-time.After(2 * time.Minute):
		d.cmd.Process.Kill()
		<-d.exited
		d.t.Errorf("daemon did not stop within 2m of SIGTERM")
		d.dumpLog()
	}
	d.log.Close()
	d.cmd = nil
	if d.t.Failed() {
		d.dumpLog()
	}
}

func (d *daemon) dumpLog() {
	data, _ := os.ReadFile(filepath.Join(d.dataDir, "daemon.log"))
	d.t.Logf("daemon log:\n%s", data)
	// The guests' serial consoles (a VM deleted since has none left): a
	// guest that never answers shows here where it stopped.
	consoles, _ := filepath.Glob(filepath.Join(d.dataDir, "logs", "*.txt"))
	for _, c := range consoles {
		data, _ := os.ReadFile(c)
		lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		d.t.Logf("console %s, last lines:\n%s", filepath.Base(c), strings.Join(lines[max(0, len(lines)-40):], "\n"))
	}
}

// assertNothingLeft checks that no qemu process, disk, VM socket or run
// directory of this daemon remains.
func (d *daemon) assertNothingLeft(t *testing.T) {
	t.Helper()
	if procs := qemuProcesses(d.dataDir); len(procs) > 0 {
		t.Errorf("qemu processes left: %v", procs)
	}
	for _, dir := range []string{"disks", "run"} {
		entries, _ := os.ReadDir(filepath.Join(d.dataDir, dir))
		for _, e := range entries {
			t.Errorf("left in %s: %s", dir, e.Name())
		}
	}
}

// qemuProcesses lists the pids of qemu processes whose command line
// mentions dir.
func qemuProcesses(dir string) []string {
	var out []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		s := string(cmdline)
		if strings.Contains(s, "qemu-system") && strings.Contains(s, dir) {
			out = append(out, e.Name())
		}
	}
	return out
}

// createReady creates a VM in group and waits for its agent, failing the
// test if that does not work within 3 minutes.
func createReady(t *testing.T, c *client.Client, group string, req api.CreateNodeRequest) *api.CreateNodeResponse {
	t.Helper()
	node, err := c.CreateNode(context.Background(), group, req, client.CreateOptions{Wait: "agent", Timeout: 3 * time.Minute})
	if err != nil {
		t.Fatalf("CreateNode(%s) with wait=agent: %v", group, err)
	}
	return node
}
