package vm

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/config"
	"github.com/openslicer/openslicer/internal/hypervisor/hypervisortest"
	"github.com/openslicer/openslicer/internal/vmstate"
)

// appendConsole writes to a fake machine's console log, as its guest would.
func appendConsole(t *testing.T, m *hypervisortest.Machine, text string) {
	f, err := os.OpenFile(m.Spec.ConsoleLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Error(err)
		return
	}
	defer f.Close()
	if _, err := f.WriteString(text); err != nil {
		t.Error(err)
	}
}

// watchdogEnv is an env whose guests never answer (no agent), with the
// boot watchdog at bound.
func watchdogEnv(t *testing.T, fake *hypervisortest.Fake, groups []config.HostGroup, net Network, bound time.Duration) *env {
	e := newEnvWith(t, fake, groups, net)
	e.m.opt.Accelerator, e.m.opt.BootWatchdog = "tcg", bound
	return e
}

// A guest that prints nothing fails its create with ErrBootFailed, long
// before the wait's own timeout, naming the accelerator and the bound, and
// the create unwinds: no record, disk, run dir, machine or network left.
func TestBootWatchdogSilentGuest(t *testing.T) {
	net := &fakeNetwork{}
	e := watchdogEnv(t, &hypervisortest.Fake{}, netGroups(), net, 300*time.Millisecond)
	_, err := e.m.Create(context.Background(), "iso", api.CreateNodeRequest{}, CreateOptions{Wait: WaitAgent, Timeout: 10 * time.Second})
	if !errors.Is(err, api.ErrBootFailed) {
		t.Fatalf("Create of a silent guest = %v, want ErrBootFailed", err)
	}
	for _, want := range []string{`vm "iso-1"`, "printed nothing on its console within 300ms (boot watchdog; accelerator tcg)", "last console lines:\n  (none)"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	if api.StatusOf(err) != 502 {
		t.Errorf("status of the error = %d, want 502", api.StatusOf(err))
	}
	e.assertEmpty(t)
	if up := net.upVMs(); len(up) != 0 {
		t.Errorf("networks left up: %v", up)
	}
}

// A guest that prints is not failed by the watchdog: its wait runs to its
// own timeout.
func TestBootWatchdogPrintingGuest(t *testing.T) {
	fake := &hypervisortest.Fake{OnStart: func(m *hypervisortest.Machine) {
		appendConsole(t, m, "[    0.000000] Linux version 6.1.0\n")
	}}
	e := watchdogEnv(t, fake, []config.HostGroup{{Name: "sbox", VCPU: 2, RamGB: 1}}, nil, 100*time.Millisecond)
	_, err := e.m.Create(context.Background(), "sbox", api.CreateNodeRequest{}, CreateOptions{Wait: WaitAgent, Timeout: time.Second})
	if !errors.Is(err, api.ErrTimeout) {
		t.Fatalf("Create of a guest that prints but never answers = %v, want ErrTimeout", err)
	}
	e.assertEmpty(t)
}

// A machine that exits before its agent answers (a kernel panic with
// panic=-1 and -no-reboot) fails the create at once with the console's
// last lines, even with no watchdog bound.
func TestBootWatchdogMachineExits(t *testing.T) {
	fake := &hypervisortest.Fake{OnStart: func(m *hypervisortest.Machine) {
		go func() {
			appendConsole(t, m, "[    0.78] /dev/root: Can't open blockdev\r\n[    0.78] Kernel panic - not syncing: VFS: Unable to mount root fs\r\n")
			m.Exit()
		}()
	}}
	e := watchdogEnv(t, fake, []config.HostGroup{{Name: "sbox", VCPU: 2, RamGB: 1}}, nil, 0)
	_, err := e.m.Create(context.Background(), "sbox", api.CreateNodeRequest{}, CreateOptions{Wait: WaitAgent, Timeout: 10 * time.Second})
	if !errors.Is(err, api.ErrBootFailed) {
		t.Fatalf("Create of a guest whose machine exits = %v, want ErrBootFailed", err)
	}
	for _, want := range []string{"its machine exited before the agent was ready (accelerator tcg)",
		"last console lines:\n  [    0.78] /dev/root: Can't open blockdev\n  [    0.78] Kernel panic - not syncing: VFS: Unable to mount root fs"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	e.assertEmpty(t)
}

// A relaunch is watched like a create: a silent boot fails it, the VM
// stays stopped with its disk, and no machine is left. Only this boot's
// console output counts: what earlier boots printed does not.
func TestBootWatchdogRelaunch(t *testing.T) {
	e := watchdogEnv(t, &hypervisortest.Fake{}, []config.HostGroup{{Name: "sbox", VCPU: 2, RamGB: 1}}, nil, 300*time.Millisecond)
	ctx := context.Background()
	if _, err := e.m.Create(ctx, "sbox", api.CreateNodeRequest{Persistent: true}, CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	machine := e.fake.Running()[0]
	appendConsole(t, machine, "output of the first boot\n")
	machine.Exit()
	waitState(t, e, "sbox-1", vmstate.Stopped)

	_, err := e.m.Relaunch(ctx, "sbox-1", CreateOptions{Wait: WaitAgent, Timeout: 10 * time.Second})
	if !errors.Is(err, api.ErrBootFailed) || !strings.Contains(err.Error(), "printed nothing on its console") {
		t.Fatalf("Relaunch of a silent guest = %v, want ErrBootFailed for a silent console", err)
	}
	if !strings.Contains(err.Error(), "last console lines:\n  (none)") {
		t.Errorf("error %q quotes console output from an earlier boot", err)
	}
	if n, _ := e.m.List(Filter{}); len(n) != 1 || n[0].Status != api.StatusStopped {
		t.Errorf("after a failed relaunch: %+v, want sbox-1 stopped", n)
	}
	if r := e.fake.Running(); len(r) != 0 {
		t.Errorf("%d machines running after a failed relaunch", len(r))
	}
	if _, err := os.Stat(filepath.Join(e.dir, "disks", "sbox-1.img")); err != nil {
		t.Errorf("the persistent disk is gone after a failed relaunch: %v", err)
	}
}

// A restored guest prints nothing new, so its bound is on the agent
// answering: a restore whose agent stays silent fails, and the VM stays
// suspended with its state file.
func TestBootWatchdogRestore(t *testing.T) {
	e := watchdogEnv(t, &hypervisortest.Fake{}, []config.HostGroup{{Name: "sbox", VCPU: 2, RamGB: 1}}, nil, 300*time.Millisecond)
	ctx := context.Background()
	if _, err := e.m.Create(ctx, "sbox", api.CreateNodeRequest{}, CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	appendConsole(t, e.fake.Running()[0], "booted\n") // as a real guest would have
	if err := e.m.Suspend(ctx, "sbox-1"); err != nil {
		t.Fatal(err)
	}
	err := e.m.Restore(ctx, "sbox-1", CreateOptions{Wait: WaitAgent, Timeout: 10 * time.Second})
	if !errors.Is(err, api.ErrBootFailed) || !strings.Contains(err.Error(), "its agent did not answer within 300ms of the restore") {
		t.Fatalf("Restore whose agent never answers = %v, want ErrBootFailed naming the restore", err)
	}
	if n, _ := e.m.List(Filter{}); len(n) != 1 || n[0].State != api.StateSuspended {
		t.Errorf("after a failed restore: %+v, want sbox-1 suspended", n)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "disks", "sbox-1.state")); err != nil {
		t.Errorf("state file gone after a failed restore: %v", err)
	}
	if r := e.fake.Running(); len(r) != 0 {
		t.Errorf("%d machines running after a failed restore", len(r))
	}
}

func waitState(t *testing.T, e *env, hostname string, want vmstate.State) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		in, err := e.m.get(hostname)
		if err != nil {
			t.Fatal(err)
		}
		in.mu.Lock()
		state := in.rec.State
		in.mu.Unlock()
		if state == want {
			return
		}
	}
	t.Fatalf("vm %s never became %s", hostname, want)
}

func TestConsoleTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "console.txt")
	var b strings.Builder
	b.WriteString("from an earlier boot\n")
	offset := int64(b.Len())
	const n = consoleTailLines + 5
	for i := range n {
		b.WriteString(strings.Repeat("x", i) + "line\r\n\n")
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	got := strings.Split(consoleTail(path, offset), "\n")
	if len(got) != consoleTailLines || got[0] != "  "+strings.Repeat("x", 5)+"line" || got[len(got)-1] != "  "+strings.Repeat("x", n-1)+"line" {
		t.Errorf("consoleTail = %q, want the last %d non-empty lines, indented", got, consoleTailLines)
	}
	if got := consoleTail(path, int64(b.Len())); got != "  (none)" {
		t.Errorf("consoleTail with nothing new = %q", got)
	}
	if got := consoleTail(filepath.Join(t.TempDir(), "missing"), 0); got != "  (none)" {
		t.Errorf("consoleTail of a missing log = %q", got)
	}
	// A log longer than the bytes read: the cut first line is dropped.
	long := strings.Repeat("y", 2*consoleTailBytes) + "\nlast\n"
	if err := os.WriteFile(path, []byte(long), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := consoleTail(path, 0); got != "  last" {
		t.Errorf("consoleTail of a long log = %q, want only the whole last line", got)
	}
}

func TestBootWatchdogFor(t *testing.T) {
	for _, tt := range []struct {
		set  string
		kvm  bool
		want time.Duration
	}{
		{"", true, DefaultBootWatchdogKVM},
		{"", false, DefaultBootWatchdogTCG},
		{"10s", true, 10 * time.Second},
		{"2m", false, 2 * time.Minute},
	} {
		if got := BootWatchdogFor(&config.Config{BootWatchdog: tt.set}, tt.kvm); got != tt.want {
			t.Errorf("BootWatchdogFor(%q, kvm %v) = %s, want %s", tt.set, tt.kvm, got, tt.want)
		}
	}
}
