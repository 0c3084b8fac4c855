package image

import (
	"bytes"
	"context"
	"github.com/openslicer/openslicer/internal/testenv"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// testAgent returns a static binary to stand in as the agent: the real
// slicer-agent when it builds, otherwise busybox (the builder only copies
// it).
func testAgent(t *testing.T) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "slicer-agent")
	cmd := exec.Command("go", "build", "-o", out, "./cmd/slicer-agent")
	cmd.Dir = "../.."
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err == nil {
		return out
	} else {
		t.Logf("go build ./cmd/slicer-agent: %v: %s; using %s as the agent", err, bytes.TrimSpace(msg), busyboxPath)
	}
	return busyboxPath
}

// requireBuildTools skips unless this machine can build the min image.
func requireBuildTools(t *testing.T) {
	t.Helper()
	testenv.RequireFullSuite(t) // builds a real image: downloads a 26 MB kernel
	for _, tool := range []string{"apt-get", "apt-cache", "dpkg-deb"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not found: needs a Debian host", tool)
		}
	}
	for _, tool := range []string{"mkfs.ext4", "debugfs", "resize2fs", "dumpe2fs"} {
		if _, err := lookTool(tool, "e2fsprogs"); err != nil {
			t.Skip(err)
		}
	}
	if err := requireStatic(busyboxPath, "busybox", "install busybox-static"); err != nil {
		t.Skip(err)
	}
	if out, err := exec.Command("apt-cache", "depends", kernelMetapackage()).CombinedOutput(); err != nil {
		t.Skipf("apt-cache depends %s: %v: %s", kernelMetapackage(), err, out)
	}
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func debugfsOut(t *testing.T, image, request string) string {
	t.Helper()
	debugfs, _ := lookTool("debugfs", "e2fsprogs")
	out, err := exec.Command(debugfs, "-R", request, image).Output()
	if err != nil {
		t.Fatalf("debugfs -R %q: %v", request, err)
	}
	return string(out)
}

func TestMinImage(t *testing.T) {
	requireBuildTools(t)
	ctx := context.Background()
	dir := t.TempDir()
	agent := testAgent(t)
	var progress bytes.Buffer
	b := &Builder{Dir: dir, AgentBinary: agent, Log: testLogger(t), Progress: &progress}

	start := time.Now()
	img, err := b.Min(ctx)
	if err != nil && strings.Contains(err.Error(), "apt-get download") {
		t.Skipf("no kernel package (needs the Debian mirror): %v", err)
	}
	if err != nil {
		t.Fatalf("Min() = %v", err)
	}
	t.Logf("built %s in %s:\n%s", img.Digest, time.Since(start), progress.String())

	t.Run("layout", func(t *testing.T) {
		imgDir := filepath.Join(dir, "min-"+strings.TrimPrefix(img.Digest, "sha256:")[:16])
		for _, p := range []string{img.Kernel, img.Initrd, img.RootFS} {
			if filepath.Dir(p) != imgDir {
				t.Errorf("%s is not in %s", p, imgDir)
			}
		}
		if !strings.HasPrefix(img.KernelVersion, "6.") || img.Name != "min" {
			t.Errorf("image = %+v", img)
		}
		debs, _ := filepath.Glob(filepath.Join(dir, "debs", "linux-image-*.deb"))
		if len(debs) != 1 {
			t.Errorf("cached kernel packages = %v, want one", debs)
		}
		leftovers, _ := filepath.Glob(filepath.Join(dir, ".build-*"))
		if len(leftovers) != 0 {
			t.Errorf("build directories left behind: %v", leftovers)
		}
		k, err := os.ReadFile(img.Kernel)
		if err != nil || len(k) < 0x210 || string(k[0x202:0x206]) != "HdrS" {
			t.Errorf("%s is not a bzImage (%v)", img.Kernel, err)
		}
		for _, step := range []string{"downloading kernel", "extracted kernel", "initramfs with", "rootfs with", "built in"} {
			if !strings.Contains(progress.String(), step) {
				t.Errorf("progress lacks %q", step)
			}
		}
	})

	t.Run("initramfs", func(t *testing.T) {
		if _, err := exec.LookPath("cpio"); err != nil {
			t.Skip("cpio not installed")
		}
		list, err := exec.Command("sh", "-c", "cpio -t --quiet < "+img.Initrd).Output()
		if err != nil {
			t.Fatalf("cpio -t: %v", err)
		}
		names := strings.Fields(string(list))
		for _, want := range []string{"init", "dev/console", "newroot", "lib/modules/load.order", "lib/modules/virtio_blk.ko"} {
			if !slices.Contains(names, want) {
				t.Errorf("initramfs lacks %s; has %v", want, names)
			}
		}
		order, err := exec.Command("sh", "-c", "cpio -i --quiet --to-stdout lib/modules/load.order < "+img.Initrd).Output()
		if err != nil {
			t.Fatalf("read load.order: %v", err)
		}
		lines := strings.Fields(string(order))
		pos := map[string]int{}
		for i, l := range lines {
			pos[strings.TrimSuffix(strings.TrimPrefix(l, "/lib/modules/"), ".ko")] = i
			if !slices.Contains(names, strings.TrimPrefix(l, "/")) {
				t.Errorf("load.order names %s, which is not in the initramfs", l)
			}
		}
		for _, m := range initramfsModules {
			if _, ok := pos[m]; !ok {
				t.Errorf("load.order lacks %s:\n%s", m, order)
			}
		}
		for _, before := range [][2]string{
			{"virtio_ring", "virtio"}, {"virtio", "virtio_mmio"}, {"virtio", "virtio_blk"},
			{"failover", "net_failover"}, {"net_failover", "virtio_net"},
			{"vsock", "vmw_vsock_virtio_transport_common"}, {"vmw_vsock_virtio_transport_common", "vmw_vsock_virtio_transport"},
		} {
			if pos[before[0]] >= pos[before[1]] {
				t.Errorf("load.order has %s after %s:\n%s", before[0], before[1], order)
			}
		}
		init, err := exec.Command("sh", "-c", "cpio -i --quiet --to-stdout init < "+img.Initrd).Output()
		want, _ := os.ReadFile(agent)
		if err != nil || !bytes.Equal(init, want) {
			t.Errorf("/init differs from the agent binary (%v)", err)
		}
	})

	t.Run("rootfs", func(t *testing.T) {
		if ls := debugfsOut(t, img.RootFS, "ls -l /bin"); !strings.Contains(ls, " busybox") || !strings.Contains(ls, " sh") {
			t.Errorf("/bin lacks busybox or sh:\n%s", ls)
		}
		if got := debugfsOut(t, img.RootFS, "stat /bin/sh"); !strings.Contains(got, "Fast link dest: \"/bin/busybox\"") {
			t.Errorf("/bin/sh is not a link to /bin/busybox:\n%s", got)
		}
		if got := debugfsOut(t, img.RootFS, "ls -l /usr/local/bin"); !strings.Contains(got, "slicer-agent") {
			t.Errorf("/usr/local/bin lacks slicer-agent:\n%s", got)
		}
		if got := debugfsOut(t, img.RootFS, "cat /etc/passwd"); got != renderPasswd(minAccounts) {
			t.Errorf("/etc/passwd = %q", got)
		}
		for p, want := range map[string]string{
			"/home/ubuntu": "User:  1000   Group:  1000",
			"/tmp":         "Mode:  01777",
			"/root":        "Mode:  0700",
			"/etc/shadow":  "User:     0   Group:     0",
			"/bin/busybox": "User:     0   Group:     0",
			"/bin/bash":    "Mode:  0755",
		} {
			if got := debugfsOut(t, img.RootFS, "stat "+p); !strings.Contains(got, want) {
				t.Errorf("stat %s lacks %q:\n%s", p, want, got)
			}
		}
		e2fsck, _ := lookTool("e2fsck", "e2fsprogs")
		if out, err := exec.Command(e2fsck, "-fn", img.RootFS).CombinedOutput(); err != nil {
			t.Errorf("e2fsck -fn: %v\n%s", err, out)
		}
	})

	t.Run("cached", func(t *testing.T) {
		progress.Reset()
		again, err := b.Min(ctx)
		if err != nil || *again != *img {
			t.Errorf("Min() again = %+v, %v; want %+v", again, err, img)
		}
		var p2 bytes.Buffer
		fresh := &Builder{Dir: dir, AgentBinary: agent, Log: testLogger(t), Progress: &p2}
		again, err = fresh.Min(ctx)
		if err != nil || *again != *img {
			t.Errorf("Min() from a new Builder = %+v, %v; want %+v", again, err, img)
		}
		if progress.Len()+p2.Len() != 0 {
			t.Errorf("cached Min() printed progress:\n%s%s", progress.String(), p2.String())
		}
	})

	t.Run("cached kernel package needs no apt", func(t *testing.T) {
		// apt that fails, as on a machine offline or without package lists.
		bin := t.TempDir()
		fake := "#!/bin/sh\necho 'E: No packages found' >&2\nexit 100\n"
		for _, tool := range []string{"apt-cache", "apt-get"} {
			if err := os.WriteFile(filepath.Join(bin, tool), []byte(fake), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
		if err := os.RemoveAll(filepath.Dir(img.RootFS)); err != nil {
			t.Fatal(err)
		}
		offline := &Builder{Dir: dir, AgentBinary: agent, Log: testLogger(t)}
		again, err := offline.Min(ctx)
		if err != nil || again.Digest != img.Digest {
			t.Errorf("offline Min() = %+v, %v; want digest %s", again, err, img.Digest)
		}
	})

	t.Run("agent change rebuilds once for concurrent builders", func(t *testing.T) {
		changed := filepath.Join(t.TempDir(), "agent")
		data, err := os.ReadFile(agent)
		if err != nil {
			t.Fatal(err)
		}
		// Appended bytes keep an ELF valid and change its hash.
		if err := os.WriteFile(changed, append(data, "x"...), 0o755); err != nil {
			t.Fatal(err)
		}
		// Two Builders share Dir but not a mutex, like two processes: the
		// file lock must make one build and the other reuse it.
		var wg sync.WaitGroup
		imgs := make([]*Image, 2)
		errs := make([]error, 2)
		outs := make([]bytes.Buffer, 2)
		for i := range imgs {
			wg.Go(func() {
				imgs[i], errs[i] = (&Builder{Dir: dir, AgentBinary: changed, Log: testLogger(t), Progress: &outs[i]}).Min(ctx)
			})
		}
		wg.Wait()
		for i := range imgs {
			if errs[i] != nil {
				t.Fatalf("Min() with another agent = %v", errs[i])
			}
		}
		if *imgs[0] != *imgs[1] {
			t.Errorf("concurrent builders disagree: %+v and %+v", imgs[0], imgs[1])
		}
		if builds := strings.Count(outs[0].String()+outs[1].String(), "built in"); builds != 1 {
			t.Errorf("concurrent builders built %d times, want 1:\n%s\n%s", builds, outs[0].String(), outs[1].String())
		}
		if imgs[0].Digest == img.Digest || imgs[0].RootFS == img.RootFS {
			t.Errorf("another agent gave the same image %s", img.Digest)
		}
		if _, err := os.Stat(img.RootFS); err != nil {
			t.Errorf("older image removed: %v", err)
		}
	})

	t.Run("clone to 25G", func(t *testing.T) {
		dst := filepath.Join(t.TempDir(), "vm.img")
		const size = 25 << 30
		start := time.Now()
		if err := Clone(ctx, img.RootFS, dst, size); err != nil {
			t.Fatalf("Clone() = %v", err)
		}
		took := time.Since(start)
		if got := fsSizeBytes(t, dst); got != size {
			t.Errorf("cloned filesystem is %d bytes, want %d", got, size)
		}
		t.Logf("clone + grow to 25G: %s (%s allocated)", took, diskUsage(dst))
	})
}

// fsSizeBytes reads block count times block size from dumpe2fs -h.
func fsSizeBytes(t *testing.T, file string) int64 {
	t.Helper()
	dumpe2fs, err := lookTool("dumpe2fs", "e2fsprogs")
	if err != nil {
		t.Skip(err)
	}
	out, err := exec.Command(dumpe2fs, "-h", file).Output()
	if err != nil {
		t.Fatalf("dumpe2fs -h %s: %v", file, err)
	}
	field := func(name string) int64 {
		m := regexp.MustCompile(`(?m)^` + name + `:\s+(\d+)$`).FindSubmatch(out)
		if m == nil {
			t.Fatalf("dumpe2fs -h: no %q in\n%s", name, out)
		}
		n, _ := strconv.ParseInt(string(m[1]), 10, 64)
		return n
	}
	return field("Block count") * field("Block size")
}

func diskUsage(p string) string {
	out, err := exec.Command("du", "-h", p).Output()
	if err != nil {
		return "?"
	}
	return strings.Fields(string(out))[0]
}
