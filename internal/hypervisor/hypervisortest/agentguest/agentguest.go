// Package agentguest is the hypervisortest.Guest of real backends: the
// built-in min image (the kernel, the initramfs whose PID 1 is the slicer
// agent, and the root disk) that SLICER_TEST_KERNEL points at, spoken to
// through the host's agent client over the machine's agent channel.
package agentguest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/agent"
	"github.com/openslicer/openslicer/internal/hypervisor"
	"github.com/openslicer/openslicer/internal/hypervisor/hypervisortest"
)

// EnvKernel names the vmlinuz of a built min image, with initrd and
// rootfs.ext4 beside it (e.g. /var/lib/slicer/images/min-*/vmlinuz).
const EnvKernel = "SLICER_TEST_KERNEL"

// Guest is the min image.
type Guest struct {
	Kernel, Initrd, RootFS string
	// Log receives the agent client's log; nil discards.
	Log *slog.Logger
}

var _ hypervisortest.Guest = Guest{}

// FromEnv returns the min image whose kernel SLICER_TEST_KERNEL names; it
// skips t when the variable is unset or the image is incomplete.
func FromEnv(t testing.TB) Guest {
	t.Helper()
	kernel := os.Getenv(EnvKernel)
	if kernel == "" {
		t.Skipf("set %s to the vmlinuz of a built min image (with initrd and rootfs.ext4 beside it)", EnvKernel)
	}
	dir := filepath.Dir(kernel)
	g := Guest{Kernel: kernel, Initrd: filepath.Join(dir, "initrd"), RootFS: filepath.Join(dir, "rootfs.ext4")}
	for _, p := range []string{g.Kernel, g.Initrd, g.RootFS} {
		if _, err := os.Stat(p); err != nil {
			t.Skipf("min image incomplete: %v", err)
		}
	}
	return g
}

// Spec implements hypervisortest.Guest: one vCPU, 256 MiB and a clone of
// the image's root disk.
func (g Guest) Spec(t *testing.T) hypervisor.Spec {
	t.Helper()
	dir := t.TempDir()
	disk := filepath.Join(dir, "disk.img")
	if out, err := exec.Command("cp", "--reflink=auto", "--sparse=always", g.RootFS, disk).CombinedOutput(); err != nil {
		t.Fatalf("clone root disk: %v: %s", err, out)
	}
	return hypervisor.Spec{
		ID: dir, Name: "conformance", VCPUs: 1, MemoryBytes: 256 << 20,
		Kernel: g.Kernel, Initrd: g.Initrd, Cmdline: "slicer.hostname=conformance",
		Disks:  []hypervisor.Disk{{Path: disk, Format: "raw"}},
		RunDir: filepath.Join(dir, "run"), ConsoleLog: filepath.Join(dir, "console.txt"),
	}
}

// HonoursPowerButton implements hypervisortest.Guest: the agent, PID 1 of
// the min image, does not listen for the ACPI power button.
func (g Guest) HonoursPowerButton() bool { return false }

// Connect implements hypervisortest.Guest: an agent client on m's channel,
// once the agent answers health.
func (g Guest) Connect(ctx context.Context, m hypervisor.Machine) (hypervisortest.GuestSession, error) {
	log := g.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := agent.NewClient(m.DialAgent, log)
	if err := c.WaitReady(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return session{c}, nil
}

// session keeps values in files under /tmp, a tmpfs in the min image:
// guest memory.
type session struct{ c *agent.Client }

// sh runs script as root with sh -c and args, and returns its stdout.
func (s session) sh(ctx context.Context, script string, args ...string) (string, error) {
	root := uint32(0)
	res, err := s.c.ExecBuffered(ctx, &api.ExecRequest{
		Command: "sh", Args: append([]string{"-c", script, "sh"}, args...), UID: &root, GID: &root,
	})
	if err != nil {
		return "", err
	}
	if res.ExitCode != 0 || res.Error != "" {
		return "", fmt.Errorf("guest sh %q: exit %d, error %q, stderr %q", script, res.ExitCode, res.Error, res.Stderr)
	}
	return res.Stdout, nil
}

func (s session) Put(ctx context.Context, key, value string) error {
	_, err := s.sh(ctx, `printf %s "$2" >"/tmp/conformance-$1"`, key, value)
	return err
}

func (s session) Get(ctx context.Context, key string) (string, error) {
	out, err := s.sh(ctx, `cat "/tmp/conformance-$1"`, key)
	return strings.TrimSpace(out), err
}

// PowerOff asks the agent to power the guest off (POST /v1/power), which
// it answers before it acts. An image whose agent is older than the route
// (404) is asked as it was then, with busybox's poweroff, whose exec may
// not answer (the guest goes away under it).
func (s session) PowerOff(ctx context.Context) error {
	err := s.c.Power(ctx, agent.PowerOff)
	if errors.Is(err, api.ErrNotFound) {
		root := uint32(0)
		s.c.ExecBuffered(ctx, &api.ExecRequest{Command: "poweroff", UID: &root, GID: &root})
		return nil
	}
	return err
}

// Close leaves the guest running and ready for its next host
// (agent.Client.Detach).
func (s session) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return s.c.Detach(ctx)
}
