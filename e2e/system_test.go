package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/testenv"
)

// agentOnlyImage is an OCI image whose root file system holds one file and
// no program at all: no busybox, no shell, no poweroff. Its VMs run the
// agent from min's initramfs, so the agent is all the guest has.
func agentOnlyImage(t *testing.T) v1.Image {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mtime := time.Unix(1700000000, 0)
	for _, h := range []*tar.Header{
		{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: mtime},
		{Name: "etc/agent-only", Typeflag: tar.TypeReg, Mode: 0o644, Size: 3, ModTime: mtime},
		{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777, ModTime: mtime},
	} {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			io.WriteString(tw, "yes")
		}
	}
	tw.Close()
	data := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, l)
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := img.ConfigFile()
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	return img
}

// consoleCount counts the lines of host's console log that hold s.
func consoleCount(t *testing.T, d *daemon, host, s string) int {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(d.dataDir, "logs", host+".txt"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(data), s)
}

// TestShutdownWithoutBusybox: a guest whose root disk holds no program at
// all powers off, and reboots, when asked through the API: the agent does
// it itself (the power route), and the kernel logs that it did, which it
// does not when the machine is killed.
func TestShutdownWithoutBusybox(t *testing.T) {
	testenv.RequireE2E(t)
	t.Parallel()
	dir := t.TempDir()
	lp, err := layout.Write(filepath.Join(dir, "layout"), empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(agentOnlyImage(t), layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "v1"})); err != nil {
		t.Fatal(err)
	}
	d := startDaemonYAML(t, strings.Replace(groupYAML, "%s", "nobb", 1)+"    image: oci:"+filepath.Join(dir, "layout")+":v1\n")
	c, ctx := d.client, context.Background()
	host := createReady(t, c, "nobb", api.CreateNodeRequest{Persistent: true}).Hostname

	if _, err := c.Stat(ctx, host, "/etc/agent-only"); err != nil {
		t.Fatalf("stat /etc/agent-only: %v (not the agent-only image?)", err)
	}
	for _, p := range []string{"/bin/busybox", "/bin/sh", "/sbin/poweroff", "/sbin/reboot"} {
		if _, err := c.Stat(ctx, host, p); !errors.Is(err, api.ErrNotFound) {
			t.Fatalf("stat %s in the agent-only guest = %v, want 404", p, err)
		}
	}

	if err := c.Shutdown(ctx, host, "shutdown"); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	waitStatus(t, c, host, api.StatusStopped)
	if n := consoleCount(t, d, host, "reboot: Power down"); n != 1 {
		t.Errorf("the guest's kernel logged its power-off %d times, want once (it was killed?)", n)
	}

	if _, err := c.Relaunch(ctx, host); err != nil {
		t.Fatalf("Relaunch: %v", err)
	}
	if err := c.Shutdown(ctx, host, "reboot"); err != nil {
		t.Fatalf("Shutdown reboot: %v", err)
	}
	waitStatus(t, c, host, api.StatusStopped)
	if n := consoleCount(t, d, host, "reboot: Restarting system"); n != 1 {
		t.Errorf("the guest's kernel logged its restart %d times, want once (it was killed?)", n)
	}
	if _, err := c.DeleteNode(ctx, "nobb", host); err != nil {
		t.Fatal(err)
	}
	d.assertNothingLeft(t)
}

// urandom32 reads 32 bytes of the guest's /dev/urandom, as hex.
func urandom32(t *testing.T, d *daemon, host string) string {
	t.Helper()
	out, errOut, code := execIn(t, d.client, host, &api.ExecRequest{Command: "head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n'", Shell: "/bin/sh"}, nil)
	if code != 0 || len(out) != 64 {
		t.Fatalf("read /dev/urandom: %q %q exit %d", out, errOut, code)
	}
	return out
}

// TestRestoresDoNotShareRNG restores one suspended memory image twice
// (its state directory and disk kept aside and put back) and reads
// /dev/urandom in each first thing: the two reads differ, because the
// daemon hands every restored guest fresh entropy, which its kernel
// credits and reseeds from. Without that they would be the same: the
// guest has one vCPU, has run for over two minutes (so its kernel reseeds
// on its own only once a minute), and draws random bytes just before it
// is suspended (a reseed then, if one was due), so nothing reseeds its RNG
// between the image and the reads, and both restores draw from one state.
func TestRestoresDoNotShareRNG(t *testing.T) {
	testenv.RequireE2E(t)
	t.Parallel()
	d := startDaemonYAML(t, strings.Replace(strings.Replace(groupYAML, "%s", "rng", 1), "vcpu: 2", "vcpu: 1", 1))
	c, ctx := d.client, context.Background()
	host := createReady(t, c, "rng", api.CreateNodeRequest{Persistent: true}).Hostname
	for {
		out, _, _ := execIn(t, c, host, &api.ExecRequest{Command: "cut -d. -f1 /proc/uptime", Shell: "/bin/sh"}, nil)
		if up, err := strconv.Atoi(strings.TrimSpace(out)); err != nil || up >= 125 {
			break
		}
		time.Sleep(5 * time.Second)
	}
	urandom32(t, d, host)
	if err := c.Suspend(ctx, host); err != nil {
		t.Fatalf("Suspend: %v", err)
	}
	disks := filepath.Join(d.dataDir, "disks")
	state, disk := filepath.Join(disks, host+".state"), filepath.Join(disks, host+".img")
	aside := t.TempDir()
	cp := func(src, dst string) {
		t.Helper()
		os.RemoveAll(dst)
		if out, err := exec.Command("cp", "-a", "--sparse=always", src, dst).CombinedOutput(); err != nil {
			t.Fatalf("cp %s %s: %v: %s", src, dst, err, out)
		}
	}
	cp(state, filepath.Join(aside, "state"))
	cp(disk, filepath.Join(aside, "disk"))

	var reads []string
	for i := range 2 {
		if i > 0 {
			// Back to the same image: suspend, then put the first
			// image's state and disk back in place of the new ones.
			if err := c.Suspend(ctx, host); err != nil {
				t.Fatalf("Suspend %d: %v", i, err)
			}
			cp(filepath.Join(aside, "state"), state)
			cp(filepath.Join(aside, "disk"), disk)
		}
		if err := c.Restore(ctx, host, "agent", 2*time.Minute); err != nil {
			t.Fatalf("Restore %d: %v", i, err)
		}
		reads = append(reads, urandom32(t, d, host))
	}
	if reads[0] == reads[1] {
		t.Errorf("two restores of one memory image read the same 32 bytes from /dev/urandom: %s", reads[0])
	}
	if _, err := c.DeleteNode(ctx, "rng", host); err != nil {
		t.Fatal(err)
	}
	d.assertNothingLeft(t)
}
