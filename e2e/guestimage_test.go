package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/client"
	"github.com/openslicer/openslicer/internal/testenv"
)

// alpineLikeImage is a one-layer image around the host's static busybox
// with only root and an "app" user (uid 2000) in /etc/passwd, as alpine or
// busybox images have, and the config given.
func alpineLikeImage(t *testing.T, env []string, workdir, user string) v1.Image {
	t.Helper()
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Skipf("needs busybox-static: %v", err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(h *tar.Header, body string) {
		h.ModTime, h.Size = time.Unix(1700000000, 0), int64(len(body))
		if h.Typeflag != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		io.WriteString(tw, body)
	}
	dir := func(name string, mode int64, uid int) {
		add(&tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode, Uid: uid, Gid: uid}, "")
	}
	file := func(name, body string, mode int64) {
		add(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode}, body)
	}
	dir("bin/", 0o755, 0)
	file("bin/busybox", string(bb), 0o755)
	for _, l := range []string{"sh", "cat", "id", "pwd", "env", "ls", "stat", "hostname", "sha256sum"} {
		add(&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + l, Linkname: "busybox", Mode: 0o777}, "")
	}
	dir("etc/", 0o755, 0)
	file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\napp:x:2000:2000:app:/srv/app:/bin/sh\n", 0o644)
	file("etc/group", "root:x:0:\napp:x:2000:\n", 0o644)
	file("etc/shadow", "root:*::0:::::\napp:!::0:::::\n", 0o640)
	dir("root/", 0o700, 0)
	dir("srv/", 0o755, 0)
	dir("srv/app/", 0o755, 2000)
	dir("tmp/", 0o1777, 0)
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
	cf.Config.Env, cf.Config.WorkingDir, cf.Config.User = env, workdir, user
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// TestOCIExecDefaults boots two images made here as an OCI layout (no
// network): the image's Env and WorkingDir are exec's defaults and the
// request's own values win; an image without uid 1000 gets the ubuntu
// user with a home, which exec and cp use by default; an image whose User
// is a non-root user runs exec as that user.
func TestOCIExecDefaults(t *testing.T) {
	testenv.RequireE2E(t)
	dir := filepath.Join(t.TempDir(), "layout")
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	env := []string{"PATH=/bin", "GREETING=from-the-image"}
	for tag, img := range map[string]v1.Image{
		"plain": alpineLikeImage(t, env, "/srv/app", ""),
		"app":   alpineLikeImage(t, env, "", "app"),
	} {
		if err := lp.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": tag})); err != nil {
			t.Fatal(err)
		}
	}
	groups := strings.Replace(groupYAML, "%s", "plain", 1) + "    image: oci:" + dir + ":plain\n" +
		strings.Replace(groupYAML, "%s", "app", 1) + "    image: oci:" + dir + ":app\n"
	d := startDaemonYAML(t, groups)
	c, ctx := d.client, context.Background()

	node := createReady(t, c, "plain", api.CreateNodeRequest{})
	out, errOut, code := execIn(t, c, node.Hostname, &api.ExecRequest{
		Command: `echo "$GREETING"; pwd; id -un; id -u; echo "$HOME"; stat -c '%u %a' "$HOME"`, Shell: "/bin/sh",
	}, nil)
	if want := "from-the-image\n/srv/app\nubuntu\n1000\n/home/ubuntu\n1000 755\n"; code != 0 || out != want {
		t.Errorf("exec with the image's defaults = %q %q exit %d, want %q", out, errOut, code, want)
	}
	out, errOut, code = execIn(t, c, node.Hostname, &api.ExecRequest{
		Command: `echo "$GREETING"; pwd; id -u`, Shell: "/bin/sh", Env: []string{"GREETING=mine"}, Cwd: "/tmp", UID: u32(0),
	}, nil)
	if want := "mine\n/tmp\n0\n"; code != 0 || out != want {
		t.Errorf("exec with the request's own values = %q %q exit %d, want %q", out, errOut, code, want)
	}
	src := filepath.Join(t.TempDir(), "note.txt")
	os.WriteFile(src, []byte("copied\n"), 0o644)
	if err := c.CpToVM(ctx, node.Hostname, src, "/home/ubuntu/note.txt", client.CopyOptions{}); err != nil {
		t.Fatalf("CpToVM as the default user: %v", err)
	}
	out, _, code = execIn(t, c, node.Hostname, &api.ExecRequest{Command: "stat", Args: []string{"-c", "%U %n", "/home/ubuntu/note.txt"}}, nil)
	if code != 0 || out != "ubuntu /home/ubuntu/note.txt\n" {
		t.Errorf("copied file = %q exit %d, want it owned by ubuntu", out, code)
	}

	// The SDK's chunked copy runs /usr/local/bin/slicer-agent, which the
	// image lacks: PID 1 links it to itself.
	chunkedUpload(t, c, node.Hostname)

	app := createReady(t, c, "app", api.CreateNodeRequest{})
	out, errOut, code = execIn(t, c, app.Hostname, &api.ExecRequest{Command: `id -un; pwd`, Shell: "/bin/sh"}, nil)
	if want := "app\n/srv/app\n"; code != 0 || out != want {
		t.Errorf("exec in an image with User app = %q %q exit %d, want %q", out, errOut, code, want)
	}
	for g, n := range map[string]string{"plain": node.Hostname, "app": app.Hostname} {
		if _, err := c.DeleteNode(ctx, g, n); err != nil {
			t.Fatal(err)
		}
	}
	d.assertNothingLeft(t)
}

// debianLayout is the OCI layout of a debian image to boot:
// $SLICER_TEST_DEBIAN_LAYOUT, else the one `slicer image build debian`
// leaves in the default image cache. It skips when there is none:
// building one takes minutes and Debian's mirror.
func debianLayout(t *testing.T) string {
	t.Helper()
	p := os.Getenv("SLICER_TEST_DEBIAN_LAYOUT")
	if p == "" {
		p = "/var/lib/slicer/images/oci/layouts/debian"
	}
	if _, err := os.Stat(filepath.Join(p, "index.json")); err != nil {
		t.Skipf("no debian image layout at %s (build one with `slicer image build debian`, or set SLICER_TEST_DEBIAN_LAYOUT): %v", p, err)
	}
	return p
}

// TestDebianSystemd boots the debian image: systemd is PID 1 and the
// system comes up running or degraded; the agent, now a systemd unit,
// answers exec as the default user ubuntu, whose sudo knows the VM's
// hostname; copies, a shell and secrets reach the guest; a shutdown goes
// through systemd and ends the machine. A group with init: agent boots
// the same image with the agent as PID 1.
func TestDebianSystemd(t *testing.T) {
	testenv.RequireE2E(t)
	dir := debianLayout(t)
	groups := strings.Replace(groupYAML, "%s", "deb", 1) + "    image: oci:" + dir + ":latest\n" +
		strings.Replace(groupYAML, "%s", "debagent", 1) + "    image: oci:" + dir + ":latest\n    init: agent\n"
	d := startDaemonYAML(t, groups)
	c, ctx := d.client, context.Background()

	// init: agent keeps the agent as PID 1 in the same image.
	kept := createReady(t, c, "debagent", api.CreateNodeRequest{})
	if out, errOut, code := execIn(t, c, kept.Hostname, &api.ExecRequest{Command: "cat", Args: []string{"/proc/1/comm"}}, nil); code != 0 || out != "init\n" {
		t.Errorf("PID 1 with init: agent = %q %q exit %d, want the agent (init)", out, errOut, code)
	}
	if _, err := c.DeleteNode(ctx, "debagent", kept.Hostname); err != nil {
		t.Fatal(err)
	}

	node := createReady(t, c, "deb", api.CreateNodeRequest{})
	h := node.Hostname

	root := func(cmd string) (string, string, int) {
		return execIn(t, c, h, &api.ExecRequest{Command: cmd, Shell: "/bin/bash", UID: u32(0)}, nil)
	}
	if out, errOut, code := root("cat /proc/1/comm; systemctl is-active slicer-agent.service; cat /proc/$PPID/comm"); code != 0 ||
		out != "systemd\nactive\nslicer-agent\n" {
		t.Errorf("PID 1, the agent's unit and exec's parent = %q %q exit %d; want systemd, active, slicer-agent", out, errOut, code)
	}
	out, errOut, _ := root("timeout 240 systemctl is-system-running --wait")
	if state := strings.TrimSpace(out); state != "running" && state != "degraded" {
		failed, _, _ := root("systemctl --failed --no-legend; journalctl -b -p warning --no-pager | tail -40")
		t.Errorf("systemctl is-system-running = %q %q, want running or degraded\n%s", out, errOut, failed)
	} else {
		t.Logf("system state: %s", state)
	}

	out, errOut, code := execIn(t, c, h, &api.ExecRequest{
		Command: `id -un; echo "$HOME"; pwd; hostname; sudo -n true && echo sudo-ok`, Shell: "/bin/bash",
	}, nil)
	if want := "ubuntu\n/home/ubuntu\n/home/ubuntu\n" + h + "\nsudo-ok\n"; code != 0 || out != want || strings.Contains(errOut, "unable to resolve") {
		t.Errorf("exec as the default user = %q %q exit %d, want %q and no resolve warning", out, errOut, code, want)
	}

	src := filepath.Join(t.TempDir(), "in.txt")
	os.WriteFile(src, []byte("to the guest\n"), 0o644)
	if err := c.CpToVM(ctx, h, src, "/home/ubuntu/in.txt", client.CopyOptions{}); err != nil {
		t.Fatalf("CpToVM: %v", err)
	}
	dst := filepath.Join(t.TempDir(), "out.txt")
	if err := c.CpFromVM(ctx, h, "/home/ubuntu/in.txt", dst, client.CopyOptions{}); err != nil {
		t.Fatalf("CpFromVM: %v", err)
	}
	if b, _ := os.ReadFile(dst); string(b) != "to the guest\n" {
		t.Errorf("copied back %q", b)
	}
	if err := c.CreateSecret(ctx, api.CreateSecretRequest{Name: "deb-token", Data: base64.StdEncoding.EncodeToString([]byte("s3cret")), Permissions: "0600"}); err != nil {
		t.Fatalf("CreateSecret: %v", err)
	}
	waitSecret(t, c, h, "deb-token", "s3cret")

	testShell(t, c, h)
	chunkedUpload(t, c, h) // /usr/local/bin/slicer-agent is the unit's binary
	if logs, err := c.Logs(ctx, h, 100000); err != nil || !strings.Contains(logs.Content, "handing PID 1 to systemd") {
		t.Errorf("the console does not show the handoff (%v)", err)
	}

	if err := c.Shutdown(ctx, h, "shutdown"); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	waitStatus(t, c, h, "gone")
	if log, _ := os.ReadFile(filepath.Join(d.dataDir, "daemon.log")); bytes.Contains(log, []byte("guest did not stop in time")) {
		t.Errorf("the guest was killed: systemd did not power it off within the stop timeout")
	}
	d.assertNothingLeft(t)
}

// waitSecret waits for the secret's file in the guest to hold want.
func waitSecret(t *testing.T, c *client.Client, host, name, want string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		out, _, code := execIn(t, c, host, &api.ExecRequest{Command: "cat", Args: []string{"/run/slicer/secrets/" + name}, UID: u32(0)}, nil)
		if code == 0 && out == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("secret %s in the guest = %q exit %d after 1m, want %q", name, out, code, want)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
