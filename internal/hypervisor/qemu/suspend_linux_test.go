package qemu

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/agent"
	"github.com/openslicer/openslicer/internal/hypervisor"
	"github.com/openslicer/openslicer/internal/testenv"
)

// guestCmdline is the guest's part of the min image's command line: its
// agent is PID 1 of the initramfs.
const guestCmdline = "slicer.hostname=suspend-test"

// minImageSpec returns a spec that boots the min image whose kernel
// SLICER_TEST_KERNEL names, with the initrd beside it and a clone of its
// rootfs.ext4 as the disk; it skips when they are not there.
func minImageSpec(t *testing.T) hypervisor.Spec {
	t.Helper()
	requireQEMU(t)
	kernel := os.Getenv("SLICER_TEST_KERNEL")
	if kernel == "" {
		t.Skip("set SLICER_TEST_KERNEL to the vmlinuz of a built min image (with initrd and rootfs.ext4 beside it)")
	}
	dir := filepath.Dir(kernel)
	initrd, rootfs := filepath.Join(dir, "initrd"), filepath.Join(dir, "rootfs.ext4")
	for _, p := range []string{kernel, initrd, rootfs} {
		if _, err := os.Stat(p); err != nil {
			t.Skipf("min image incomplete: %v", err)
		}
	}
	disk := filepath.Join(t.TempDir(), "disk.img")
	if out, err := exec.Command("cp", "--reflink=auto", "--sparse=always", rootfs, disk).CombinedOutput(); err != nil {
		t.Fatalf("clone root disk: %v: %s", err, out)
	}
	spec := bootSpec(t, kernel, guestCmdline)
	spec.Initrd = initrd
	spec.MemoryBytes = 256 << 20
	spec.Disks = []hypervisor.Disk{{Path: disk}}
	return spec
}

// guestSh runs script with sh -c as root in the guest and returns its
// trimmed stdout; a non-zero exit fails the test.
func guestSh(t *testing.T, c *agent.Client, script string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	root := uint32(0)
	res, err := c.ExecBuffered(ctx, &api.ExecRequest{Command: "sh", Args: []string{"-c", script}, UID: &root, GID: &root})
	if err != nil {
		t.Fatalf("exec %q: %v", script, err)
	}
	if res.ExitCode != 0 || res.Error != "" {
		t.Fatalf("exec %q: exit %d, error %q, stderr %q", script, res.ExitCode, res.Error, res.Stderr)
	}
	return strings.TrimSpace(res.Stdout)
}

// waitAgent waits (up to 3 minutes) for the guest agent behind c.
func waitAgent(t *testing.T, c *agent.Client, console string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := c.WaitReady(ctx); err != nil {
		t.Fatalf("agent: %v; console:\n%s", err, tail(console))
	}
}

// TestQEMUSuspendRestore boots the min image, leaves a process and a value
// in guest memory (/tmp is a tmpfs), suspends the machine to a state
// directory, and restores it, twice, checking each time that the qemu
// process was gone and that both the process and the value are still
// there. The second round saves a paused machine, and restores from the
// single state file an earlier daemon wrote (the bare migration stream),
// as a VM suspended before an upgrade is.
func TestQEMUSuspendRestore(t *testing.T) {
	spec := minImageSpec(t)
	ctx := context.Background()
	log := testLogger(t)
	b := New(log)

	m, err := b.Start(ctx, spec)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { m.Kill(context.Background()) })
	client := agent.NewClient(m.DialAgent, log)
	t.Cleanup(func() { client.Close() })
	waitAgent(t, client, spec.ConsoleLog)

	out := guestSh(t, client, `sleep 999 </dev/null >/dev/null 2>&1 & echo $!
		head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n' >/tmp/mark
		cat /tmp/mark`)
	pid, mark, _ := strings.Cut(out, "\n")
	t.Logf("guest: sleep pid %s, /tmp/mark %s", pid, mark)
	check := `kill -0 ` + pid + ` && tr '\0' ' ' </proc/` + pid + `/cmdline && cat /tmp/mark`
	want := "sleep 999 " + mark
	if got := guestSh(t, client, check); got != want {
		t.Fatalf("before suspend: got %q, want %q", got, want)
	}

	statePath := filepath.Join(t.TempDir(), "vm.state")
	for round := 1; round <= 2; round++ {
		// The agent client stays connected during the save, as the
		// daemon's would. The second round saves a paused machine, which
		// comes back running too.
		if round == 2 {
			if err := m.Pause(ctx); err != nil {
				t.Fatalf("Pause: %v", err)
			}
		}
		pidBefore := m.Handle().PID
		start := time.Now()
		if err := m.Suspend(ctx, statePath); err != nil {
			t.Fatalf("round %d: Suspend: %v", round, err)
		}
		took := time.Since(start)
		select {
		case <-m.Done():
		default:
			t.Fatalf("round %d: Done still open after Suspend returned", round)
		}
		if pids := processesIn(spec.RunDir); len(pids) > 0 {
			t.Fatalf("round %d: qemu processes %v still run after Suspend", round, pids)
		}
		if alive(pidBefore) {
			t.Fatalf("round %d: qemu pid %d still runs after Suspend", round, pidBefore)
		}
		if names := dirNames(t, filepath.Dir(statePath)); len(names) != 1 || names[0] != "vm.state" {
			t.Errorf("round %d: state's parent holds %v, want only vm.state", round, names)
		}
		if names := dirNames(t, statePath); !slices.Equal(names, []string{"manifest.json", migrationFile}) {
			t.Errorf("round %d: state directory holds %v, want the manifest and %s", round, names, migrationFile)
		}
		var st unix.Stat_t
		if err := unix.Stat(filepath.Join(statePath, migrationFile), &st); err != nil {
			t.Fatal(err)
		}
		t.Logf("round %d: suspend took %v; state file %.1f MiB (%.1f MiB allocated) for a %d MiB guest",
			round, took.Round(time.Millisecond), float64(st.Size)/(1<<20), float64(st.Blocks*512)/(1<<20), spec.MemoryBytes>>20)

		restore := spec
		restore.RestoreFrom = statePath
		if round == 2 {
			restore.RestoreFrom = legacyStateFile(t, statePath)
		}
		start = time.Now()
		m, err = b.Start(ctx, restore)
		if err != nil {
			t.Fatalf("round %d: Start from the state file: %v\nconsole:\n%s", round, err, tail(spec.ConsoleLog))
		}
		t.Cleanup(func() { m.Kill(context.Background()) })
		started := time.Since(start)
		wantStatus(t, spec.RunDir, "running")
		// The old client dials the old machine; a restored machine needs
		// a client of its own.
		client.Close()
		client = agent.NewClient(m.DialAgent, log)
		waitAgent(t, client, spec.ConsoleLog)
		answered := time.Since(start)
		if got := guestSh(t, client, check); got != want {
			t.Fatalf("round %d: after restore: got %q, want %q (process and /tmp/mark should survive)", round, got, want)
		}
		t.Logf("round %d: restore: Start returned after %v, agent answered after %v",
			round, started.Round(time.Millisecond), answered.Round(time.Millisecond))
	}
	t.Logf("console after the restores:\n%s", tail(spec.ConsoleLog))
	if err := m.Kill(ctx); err != nil {
		t.Fatalf("Kill: %v", err)
	}
}

// legacyStateFile turns the state directory dir into the single file an
// earlier daemon wrote in its place, the bare migration stream, and
// returns that file.
func legacyStateFile(t *testing.T, dir string) string {
	t.Helper()
	file := filepath.Join(filepath.Dir(dir), "legacy.state")
	if err := os.Rename(filepath.Join(dir, migrationFile), file); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	return file
}

// alive reports whether pid is a process that has not exited: a zombie
// waiting for its parent (init, for a daemonized qemu) to reap it has
// exited, and its memory is freed.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// The state follows the command name, which is in parentheses.
	i := strings.LastIndexByte(string(b), ')')
	return i < 0 || i+2 >= len(b) || (b[i+2] != 'Z' && b[i+2] != 'X')
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// TestQEMUSuspendFailureKeepsRunning: a save that fails (the state file's
// filesystem is full) leaves no partial file and the machine running, and
// a later save succeeds.
func TestQEMUSuspendFailureKeepsRunning(t *testing.T) {
	requireQEMU(t)
	testenv.RequireRoot(t)
	kernel := testKernel(t)
	ctx := context.Background()
	full := t.TempDir()
	if err := unix.Mount("tmpfs", full, "tmpfs", 0, "size=1m"); err != nil {
		t.Skipf("mount a small tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(full, 0) })

	spec := bootSpec(t, kernel, haltCmdline)
	m, err := New(testLogger(t)).Start(ctx, spec)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { m.Kill(context.Background()) })
	waitConsole(t, spec.ConsoleLog, "Linux version")

	err = m.Suspend(ctx, filepath.Join(full, "vm.state"))
	if err == nil {
		t.Fatal("Suspend to a full filesystem succeeded")
	}
	t.Logf("Suspend error: %v", err)
	if names := dirNames(t, full); len(names) != 0 {
		t.Errorf("state dir holds %v after a failed save, want nothing", names)
	}
	select {
	case <-m.Done():
		t.Fatal("machine exited after a failed save")
	default:
	}
	wantStatus(t, spec.RunDir, "running")
	conn, err := m.DialAgent(ctx)
	if err != nil {
		t.Fatalf("DialAgent after a failed save: %v", err)
	}
	conn.Close()

	// A paused machine stays paused.
	if err := m.Pause(ctx); err != nil {
		t.Fatalf("Pause: %v", err)
	}
	if err := m.Suspend(ctx, filepath.Join(full, "vm.state")); err == nil {
		t.Fatal("Suspend of a paused machine to a full filesystem succeeded")
	}
	wantStatus(t, spec.RunDir, "paused")
	if err := m.Resume(ctx); err != nil {
		t.Fatalf("Resume: %v", err)
	}

	statePath := filepath.Join(t.TempDir(), "vm.state")
	if err := m.Suspend(ctx, statePath); err != nil {
		t.Fatalf("Suspend after a failed one: %v", err)
	}
	<-m.Done()
	if _, err := os.Stat(statePath); err != nil {
		t.Errorf("no state file after Suspend: %v", err)
	}
}

// TestQEMURestoreFailures: a state QEMU cannot load makes Start fail and
// leaves no process behind; one saved from a machine of another size is
// refused before QEMU starts, as api.ErrConflict.
func TestQEMURestoreFailures(t *testing.T) {
	requireQEMU(t)
	kernel := testKernel(t)
	ctx := context.Background()
	b := New(testLogger(t))

	garbage := filepath.Join(t.TempDir(), "garbage.state")
	writeFile(t, garbage, strings.Repeat("not a migration stream\n", 1000))

	spec := bootSpec(t, kernel, haltCmdline)
	m, err := b.Start(ctx, spec)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { m.Kill(context.Background()) })
	waitConsole(t, spec.ConsoleLog, "Linux version")
	saved := filepath.Join(t.TempDir(), "vm.state")
	if err := m.Suspend(ctx, saved); err != nil {
		t.Fatalf("Suspend: %v", err)
	}
	damaged := filepath.Join(t.TempDir(), "damaged.state")
	if err := os.CopyFS(damaged, os.DirFS(saved)); err != nil {
		t.Fatal(err)
	}
	stream := filepath.Join(damaged, migrationFile)
	fi, err := os.Stat(stream)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, stream, strings.Repeat("x", int(fi.Size()))) // the size the manifest says
	bigger := spec
	bigger.MemoryBytes *= 2

	tests := []struct {
		name  string
		spec  hypervisor.Spec
		from  string
		class error // nil: any error
	}{
		{"not a migration stream (a legacy state file)", spec, garbage, nil},
		{"not a migration stream (a state directory)", spec, damaged, nil},
		{"memory size differs", bigger, saved, api.ErrConflict},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := tt.spec
			spec.RestoreFrom = tt.from
			m, err := b.Start(ctx, spec)
			if err == nil {
				m.Kill(ctx)
				t.Fatal("Start succeeded")
			}
			t.Logf("Start error: %v", err)
			if tt.class != nil && !errors.Is(err, tt.class) {
				t.Errorf("Start error is not %v", tt.class)
			}
			if pids := processesIn(spec.RunDir); len(pids) > 0 {
				t.Errorf("qemu processes %v left after a failed restore", pids)
			}
		})
	}
}
