package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/testenv"
)

// busyboxImage is a two-layer OCI image made on this host: the first
// layer is a small root file system around the host's static busybox, with
// /etc/gone; the second deletes /etc/gone (a whiteout) and adds /etc/added.
func busyboxImage(t *testing.T) v1.Image {
	t.Helper()
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Skipf("needs busybox-static: %v", err)
	}
	type ent struct {
		name, body, link string
		mode             int64
		uid              int
	}
	mk := func(es ...ent) v1.Layer {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, e := range es {
			h := &tar.Header{Name: e.name, Mode: e.mode, Uid: e.uid, Gid: e.uid, ModTime: time.Unix(1700000000, 0)}
			switch {
			case strings.HasSuffix(e.name, "/"):
				h.Typeflag = tar.TypeDir
			case e.link != "":
				h.Typeflag, h.Linkname = tar.TypeSymlink, e.link
			default:
				h.Typeflag, h.Size = tar.TypeReg, int64(len(e.body))
			}
			if err := tw.WriteHeader(h); err != nil {
				t.Fatal(err)
			}
			io.WriteString(tw, e.body)
		}
		tw.Close()
		data := buf.Bytes()
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	base := mk(
		ent{name: "bin/", mode: 0o755}, ent{name: "bin/busybox", body: string(bb), mode: 0o755},
		ent{name: "bin/sh", link: "busybox", mode: 0o777}, ent{name: "bin/cat", link: "busybox", mode: 0o777},
		ent{name: "bin/ls", link: "busybox", mode: 0o777}, ent{name: "bin/id", link: "busybox", mode: 0o777},
		ent{name: "bin/test", link: "busybox", mode: 0o777},
		ent{name: "etc/", mode: 0o755},
		ent{name: "etc/passwd", body: "root:x:0:0:root:/root:/bin/sh\nubuntu:x:1000:1000:ubuntu:/home/ubuntu:/bin/sh\n", mode: 0o644},
		ent{name: "etc/group", body: "root:x:0:\nubuntu:x:1000:\n", mode: 0o644},
		ent{name: "etc/gone", body: "deleted by the second layer\n", mode: 0o644},
		ent{name: "home/", mode: 0o755}, ent{name: "home/ubuntu/", mode: 0o755, uid: 1000},
		ent{name: "root/", mode: 0o700}, ent{name: "tmp/", mode: 0o1777},
	)
	top := mk(ent{name: "etc/.wh.gone", mode: 0o644}, ent{name: "etc/added", body: "from layer two\n", mode: 0o644})
	img, err := mutate.AppendLayers(empty.Image, base, top)
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := img.ConfigFile()
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Config.Env = []string{"PATH=/bin"}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// TestBootOCIImages boots the same two-layer image from an OCI layout
// directory and from a docker save tar, each in its own host group: the
// whited-out file is gone in the guest, and each VM's disk is a thin
// qcow2 overlay.
func TestBootOCIImages(t *testing.T) {
	testenv.RequireE2E(t)
	img := busyboxImage(t)
	dir := t.TempDir()
	lp, err := layout.Write(filepath.Join(dir, "layout"), empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "v1"})); err != nil {
		t.Fatal(err)
	}
	tag, _ := name.NewTag("example/busybox:v1")
	save := filepath.Join(dir, "save.tar")
	if err := tarball.WriteToFile(save, tag, img); err != nil {
		t.Fatal(err)
	}
	groups := strings.Replace(groupYAML, "%s", "lay", 1) + "    image: oci:" + filepath.Join(dir, "layout") + ":v1\n" +
		strings.Replace(groupYAML, "%s", "dock", 1) + "    image: docker-archive:" + save + "\n"
	d := startDaemonYAML(t, groups)
	for _, g := range []string{"lay", "dock"} {
		node := createReady(t, d.client, g, api.CreateNodeRequest{})
		out, errOut, code := execIn(t, d.client, node.Hostname, &api.ExecRequest{
			Command: "cat /etc/added; test -e /etc/gone && echo gone-is-there; id -u; ls /home",
			Shell:   "/bin/sh",
		}, nil)
		if code != 0 || out != "from layer two\n1000\nubuntu\n" {
			t.Errorf("%s: exec = %q %q exit %d; want layer two's file, no /etc/gone, uid 1000", g, out, errOut, code)
		}
		disk := filepath.Join(d.dataDir, "disks", node.Hostname+".img")
		f, err := os.Open(disk)
		if err != nil {
			t.Fatal(err)
		}
		magic := make([]byte, 4)
		f.Read(magic)
		st, _ := f.Stat()
		f.Close()
		if string(magic) != "QFI\xfb" {
			t.Errorf("%s: disk %s is not qcow2", g, disk)
		}
		if used := st.Sys().(*syscall.Stat_t).Blocks * 512; used > 4<<20 {
			t.Errorf("%s: disk uses %d bytes, want a thin overlay", g, used)
		}
		if _, err := d.client.DeleteNode(context.Background(), g, node.Hostname); err != nil {
			t.Fatal(err)
		}
	}
	d.assertNothingLeft(t)
}
