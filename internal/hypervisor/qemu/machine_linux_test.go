package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/hypervisor"
	"github.com/openslicer/openslicer/internal/testenv"
)

// TestHelperProcess is not a test: it is the stand-in for a qemu process
// that TestAttach* start, whose command line names a run dir's pidfile.
func TestHelperProcess(t *testing.T) {
	if os.Getenv("QEMU_TEST_HELPER") != "1" {
		return
	}
	time.Sleep(time.Hour)
}

// startHelper starts a process that looks like the qemu of runDir and
// writes its pidfile, as QEMU would.
func startHelper(t *testing.T, runDir string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "--", "-pidfile", filepath.Join(runDir, pidFile))
	cmd.Env = append(os.Environ(), "QEMU_TEST_HELPER=1")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	// Start returns once exec is past its point of no return, which is
	// before the kernel has set up the new command line: wait for it.
	for !ownsCmdline(readCmdline(cmd.Process.Pid), runDir) {
		time.Sleep(time.Millisecond)
	}
	writeFile(t, filepath.Join(runDir, pidFile), strconv.Itoa(cmd.Process.Pid)+"\n")
	return cmd
}

func readCmdline(pid int) []byte {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	return b
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), nil))
}

func TestAttachKill(t *testing.T) {
	ctx := context.Background()
	runDir := t.TempDir()
	writeFile(t, filepath.Join(runDir, agentSocket), "")
	writeFile(t, filepath.Join(runDir, qmpSocket), "")
	helper := startHelper(t, runDir)

	b := New(testLogger(t))
	// PID 0: the pid comes from the pidfile.
	m, err := b.Attach(ctx, hypervisor.Handle{Backend: "qemu", RunDir: runDir})
	if err != nil {
		t.Fatalf("Attach: %v", err)
	}
	want := hypervisor.Handle{Backend: "qemu", PID: helper.Process.Pid, RunDir: runDir}
	if got := m.Handle(); got != want {
		t.Errorf("Handle() = %+v, want %+v", got, want)
	}
	select {
	case <-m.Done():
		t.Fatal("Done closed while the process runs")
	default:
	}

	if err := m.Kill(ctx); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	select {
	case <-m.Done():
	default:
		t.Fatal("Done still open after Kill returned")
	}
	for _, name := range []string{agentSocket, qmpSocket, pidFile} {
		if _, err := os.Stat(filepath.Join(runDir, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still exists after Kill (stat error %v)", name, err)
		}
	}
	if err := m.Kill(ctx); err != nil {
		t.Errorf("second Kill: %v", err)
	}
	if err := m.Pause(ctx); !errors.Is(err, api.ErrConflict) {
		t.Errorf("Pause after exit error = %v, want api.ErrConflict", err)
	}
	if _, err := m.DialAgent(ctx); !errors.Is(err, api.ErrConflict) {
		t.Errorf("DialAgent after exit error = %v, want api.ErrConflict", err)
	}

	helper.Wait() // reap, so the pid is gone rather than a zombie
	if _, err := b.Attach(ctx, want); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("Attach to the killed process error = %v, want api.ErrNotFound", err)
	}
}

// TestAttachSeesExit: a process that dies of something else closes Done.
func TestAttachSeesExit(t *testing.T) {
	runDir := t.TempDir()
	helper := startHelper(t, runDir)
	m, err := New(testLogger(t)).Attach(context.Background(), hypervisor.Handle{PID: helper.Process.Pid, RunDir: runDir})
	if err != nil {
		t.Fatalf("Attach: %v", err)
	}
	helper.Process.Kill()
	<-m.Done()
	if _, err := os.Stat(filepath.Join(runDir, pidFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pidfile still exists after exit (stat error %v)", err)
	}
}

func TestAttachNotOurs(t *testing.T) {
	ctx := context.Background()
	b := New(testLogger(t))
	runDir := t.TempDir()
	other := startHelper(t, t.TempDir()) // a "qemu" of another run dir

	tests := []struct {
		name string
		h    hypervisor.Handle
	}{
		{"pid of an unrelated process", hypervisor.Handle{PID: os.Getpid(), RunDir: runDir}},
		{"pid of another machine", hypervisor.Handle{PID: other.Process.Pid, RunDir: runDir}},
		{"no pid and no pidfile", hypervisor.Handle{RunDir: runDir}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := b.Attach(ctx, tt.h); !errors.Is(err, api.ErrNotFound) {
				t.Errorf("Attach(%+v) error = %v, want api.ErrNotFound", tt.h, err)
			}
		})
	}
}

// testKernel returns a guest kernel for the QEMU tests, or skips.
func testKernel(t testing.TB) string {
	t.Helper()
	if k := os.Getenv("SLICER_TEST_KERNEL"); k != "" {
		return k
	}
	matches, _ := filepath.Glob("/boot/vmlinuz-*")
	for _, k := range matches {
		if f, err := os.Open(k); err == nil {
			f.Close()
			return k
		}
	}
	t.Skip("no readable /boot/vmlinuz-*: set SLICER_TEST_KERNEL to a bzImage to boot")
	return ""
}

func requireQEMU(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("boots QEMU: skipped with -short")
	}
	testenv.RequireQEMU(t)
}

func bootSpec(t *testing.T, kernel, cmdline string) hypervisor.Spec {
	runDir := filepath.Join(t.TempDir(), "run")
	t.Cleanup(func() {
		if pids := processesIn(runDir); len(pids) > 0 {
			t.Errorf("qemu processes %v left for %s", pids, runDir)
			killStrays(runDir)
		}
	})
	return hypervisor.Spec{
		ID: "test", Name: "qemu-test", VCPUs: 1, MemoryBytes: 128 << 20,
		Kernel: kernel, Cmdline: cmdline,
		RunDir: runDir, ConsoleLog: filepath.Join(runDir, "console.txt"),
	}
}

func TestQEMUStartBadKernel(t *testing.T) {
	requireQEMU(t)
	spec := bootSpec(t, filepath.Join(t.TempDir(), "no-such-vmlinuz"), "")
	m, err := New(testLogger(t)).Start(context.Background(), spec)
	if err == nil {
		m.Kill(context.Background())
		t.Fatal("Start with a missing kernel succeeded")
	}
	t.Logf("Start error: %v", err)
	if !strings.Contains(err.Error(), spec.Kernel) {
		t.Errorf("Start error %q does not quote qemu's message naming the kernel", err)
	}
	if pids := processesIn(spec.RunDir); len(pids) > 0 {
		t.Errorf("qemu processes %v left after a failed start", pids)
	}
	if _, err := os.Stat(filepath.Join(spec.RunDir, pidFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pidfile left after a failed start (stat error %v)", err)
	}
}

// TestQEMUStartCancelled: a start cut short by its context leaves no
// process behind. Killing the launching process is enough on its own:
// the daemonized qemu exits when it cannot report to it.
func TestQEMUStartCancelled(t *testing.T) {
	requireQEMU(t)
	kernel := testKernel(t)
	spec := bootSpec(t, kernel, haltCmdline)
	b := New(testLogger(t))
	// Decide before the clock starts (SLICER_ACCEL, else auto).
	mode, err := AccelModeFrom("", os.Getenv(AccelEnv))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.DecideAccel(context.Background(), mode, kernel); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	m, err := b.Start(ctx, spec)
	if err == nil {
		m.Kill(context.Background())
		t.Skip("Start finished before its context ended; nothing to check")
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Start error = %v, want context.DeadlineExceeded", err)
	}
	for end := time.Now().Add(30 * time.Second); len(processesIn(spec.RunDir)) > 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("qemu processes %v still running 30s after a cancelled start", processesIn(spec.RunDir))
		}
	}
}

// haltCmdline overrides two of the backend's arguments: a kernel booted
// without an initrd or disk panics for want of a root filesystem and,
// with panic=0 rather than panic=-1, stays halted in a machine QEMU
// reports as running; loglevel=7 undoes quiet, so the kernel prints its
// banner ("Linux version"), which the tests wait for.
const haltCmdline = "panic=0 loglevel=7"

// TestQEMULifecycle boots the kernel without an initrd or disk, which
// halts (haltCmdline). That is enough to drive the process.
func TestQEMULifecycle(t *testing.T) {
	requireQEMU(t)
	kernel := testKernel(t)
	ctx := context.Background()
	b := New(testLogger(t))
	spec := bootSpec(t, kernel, haltCmdline)

	m, err := b.Start(ctx, spec)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	defer m.Kill(ctx)
	logCmdline(t, m.Handle().PID)
	h := m.Handle()
	if h.Backend != "qemu" || h.PID <= 0 || h.RunDir != spec.RunDir {
		t.Errorf("Handle() = %+v", h)
	}
	select {
	case <-m.Done():
		t.Fatal("Done closed right after Start")
	default:
	}
	if _, err := b.Start(ctx, spec); !errors.Is(err, api.ErrConflict) {
		t.Errorf("second Start in the same run dir error = %v, want api.ErrConflict", err)
	}

	wantStatus(t, spec.RunDir, "running")
	if err := m.Pause(ctx); err != nil {
		t.Fatalf("Pause: %v", err)
	}
	wantStatus(t, spec.RunDir, "paused")
	if err := m.Resume(ctx); err != nil {
		t.Fatalf("Resume: %v", err)
	}
	wantStatus(t, spec.RunDir, "running")

	// A second daemon re-adopts the machine from its handle.
	again, err := New(testLogger(t)).Attach(ctx, h)
	if err != nil {
		t.Fatalf("Attach: %v", err)
	}
	if err := again.Pause(ctx); err != nil {
		t.Fatalf("Pause through the attached machine: %v", err)
	}
	wantStatus(t, spec.RunDir, "paused")
	if err := again.Resume(ctx); err != nil {
		t.Fatalf("Resume through the attached machine: %v", err)
	}
	conn, err := m.DialAgent(ctx)
	if err != nil {
		t.Fatalf("DialAgent: %v", err)
	}
	conn.Close()
	if err := m.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}

	waitConsole(t, spec.ConsoleLog, "Linux version")
	if err := m.Kill(ctx); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	<-again.Done()
	for _, name := range []string{agentSocket, qmpSocket, pidFile} {
		if _, err := os.Stat(filepath.Join(spec.RunDir, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still exists after Kill (stat error %v)", name, err)
		}
	}
	if pids := processesIn(spec.RunDir); len(pids) > 0 {
		t.Errorf("qemu processes %v remain after Kill", pids)
	}
	if _, err := b.Attach(ctx, h); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("Attach after Kill error = %v, want api.ErrNotFound", err)
	}
}

// TestQEMUGuestRebootEnds: with the backend's panic=-1 the panicking
// guest reboots, and -no-reboot turns that into the end of the process:
// Done closes by itself.
func TestQEMUGuestRebootEnds(t *testing.T) {
	requireQEMU(t)
	kernel := testKernel(t)
	spec := bootSpec(t, kernel, "")
	m, err := New(testLogger(t)).Start(context.Background(), spec)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	defer m.Kill(context.Background())
	select {
	case <-m.Done():
	case <-time.After(3 * time.Minute):
		t.Fatalf("guest did not end within 3m; console:\n%s", tail(spec.ConsoleLog))
	}
	if log := tail(spec.ConsoleLog); !strings.Contains(log, "Kernel panic") {
		t.Errorf("console log lacks the panic:\n%s", log)
	}
}

func wantStatus(t *testing.T, runDir, want string) {
	t.Helper()
	ctx := context.Background()
	q, err := DialQMP(ctx, filepath.Join(runDir, qmpSocket))
	if err != nil {
		t.Fatalf("DialQMP: %v", err)
	}
	defer q.Close()
	ret, err := q.Execute(ctx, "query-status", nil)
	if err != nil {
		t.Fatalf("query-status: %v", err)
	}
	var st struct{ Status string }
	if err := json.Unmarshal(ret, &st); err != nil || st.Status != want {
		t.Errorf("query-status = %s, want status %q", ret, want)
	}
}

// waitConsole waits (up to 3 minutes) for text on the console.
func waitConsole(t *testing.T, path, text string) {
	t.Helper()
	for end := time.Now().Add(3 * time.Minute); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if b, _ := os.ReadFile(path); strings.Contains(string(b), text) {
			return
		}
	}
	t.Fatalf("no %q on the console within 3m:\n%s", text, tail(path))
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

func logCmdline(t *testing.T, pid int) {
	b := readCmdline(pid)
	t.Logf("qemu command line: %s", strings.ReplaceAll(strings.TrimRight(string(b), "\x00"), "\x00", " "))
}
