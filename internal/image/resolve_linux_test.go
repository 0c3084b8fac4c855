package image

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/openslicer/openslicer/internal/imageref"
)

func TestCompareVersions(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		less bool
	}{
		{"vmlinuz-6.1.0-9-amd64", "vmlinuz-6.1.0-10-amd64", true},
		{"vmlinuz-6.1.0-10-amd64", "vmlinuz-6.1.0-9-amd64", false},
		{"vmlinuz-5.15.0", "vmlinuz-6.1.0", true},
		{"vmlinuz", "vmlinuz-6.1", true},
	} {
		if got := compareVersions(tt.a, tt.b) < 0; got != tt.less {
			t.Errorf("compareVersions(%q, %q) < 0 = %v, want %v", tt.a, tt.b, got, tt.less)
		}
	}
}

func TestFindKernelInImage(t *testing.T) {
	requireE2fs(t)
	dir := filepath.Join(t.TempDir(), "layout")
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	img := testImage(t, layerTar(t, tdir("boot/"), tfile("boot/vmlinuz-6.1.0-9-amd64", "old kernel"),
		tfile("boot/vmlinuz-6.1.0-10-amd64", "new kernel"), tlink("vmlinuz", "boot/vmlinuz-6.1.0-10-amd64"),
		tfile("boot/config-6.1.0-10-amd64", "")))
	if err := lp.AppendImage(img); err != nil {
		t.Fatal(err)
	}
	s := newStore(t)
	src := imageref.Source{Kind: imageref.OCILayout, Name: dir}
	got, err := s.Pull(context.Background(), src.String(), src)
	if err != nil {
		t.Fatal(err)
	}
	k, err := findKernel(context.Background(), got.RootFS)
	if err != nil || k != "/boot/vmlinuz-6.1.0-10-amd64" {
		t.Fatalf("findKernel = %q, %v; want the newest /boot kernel", k, err)
	}
	out := filepath.Join(t.TempDir(), "vmlinuz")
	if err := debugfsDump(context.Background(), got.RootFS, k, out); err != nil {
		t.Fatal(err)
	}
	if b := readFile(t, out); b != "new kernel" {
		t.Fatalf("dumped kernel = %q", b)
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestResolverUsesTheCacheWhenTheRegistryIsDown(t *testing.T) {
	requireE2fs(t)
	host := authRegistry(t)
	ref, _ := name.ParseReference(host + "/team/app:v1")
	if err := remote.Write(ref, twoLayers(t), remote.WithAuth(&authn.Basic{Username: "user", Password: "pass"})); err != nil {
		t.Fatal(err)
	}
	s := &Store{Dir: filepath.Join(t.TempDir(), "oci")}
	src, _ := imageref.Parse(host+"/team/app:v1", false)
	want, err := s.Pull(context.Background(), src.String(), src)
	if err != nil {
		t.Fatal(err)
	}
	// The registry now refuses everyone: the cached image is used.
	os.WriteFile(filepath.Join(os.Getenv("DOCKER_CONFIG"), "config.json"), []byte(`{}`), 0o600)
	r := &Resolver{OCI: s}
	got, err := r.pull(context.Background(), src)
	if err != nil || got.ID != want.ID {
		t.Fatalf("pull with the registry refusing = %+v, %v; want the cached %s", got, err, want.ID)
	}
	other, _ := imageref.Parse(host+"/team/other:v1", false)
	if _, err := r.pull(context.Background(), other); err == nil {
		t.Fatal("an image neither reachable nor cached: want an error")
	}
}

func TestKernelImageWithModules(t *testing.T) {
	requireE2fs(t)
	const v = "6.1.0-10-amd64"
	var builtinAll, builtinButRng []string
	for _, m := range initramfsModules {
		builtinAll = append(builtinAll, "kernel/drivers/"+m+".ko")
		if m != "virtio_rng" {
			builtinButRng = append(builtinButRng, "kernel/drivers/"+m+".ko")
		}
	}
	host := filepath.Join(t.TempDir(), "host-secret")
	os.WriteFile(host, []byte("not for guests"), 0o600)
	kernelImage := func(builtin []string) string {
		dir := filepath.Join(t.TempDir(), "layout")
		lp, err := layout.Write(dir, empty.Index)
		if err != nil {
			t.Fatal(err)
		}
		img := testImage(t, layerTar(t, tdir("boot/"), tfile("boot/vmlinuz-"+v, "kernel"),
			tdir("usr/"), tdir("usr/lib/"), tdir("usr/lib/modules/"), tdir("usr/lib/modules/"+v+"/"),
			tfile("usr/lib/modules/"+v+"/modules.builtin", strings.Join(builtin, "\n")+"\n"),
			tdir("usr/lib/modules/"+v+"/kernel/"),
			tlink("usr/lib/modules/"+v+"/kernel/virtio-rng.ko", host), // a link is never read
			tlink("lib", "usr/lib")))
		if err := lp.AppendImage(img); err != nil {
			t.Fatal(err)
		}
		return "oci:" + dir
	}
	agent := filepath.Join(t.TempDir(), "agent")
	os.WriteFile(agent, []byte("agent"), 0o755)

	r := &Resolver{OCI: newStore(t), Min: &Builder{AgentBinary: agent}, KernelImage: kernelImage(builtinAll)}
	k, initrd, err := r.kernelFromImage(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if readFile(t, k) != "kernel" || initrd == "" {
		t.Fatalf("kernel %q initrd %q", k, initrd)
	}
	if !strings.Contains(readFile(t, initrd), "lib/modules/load.order") {
		t.Errorf("initrd %s lacks the load order", initrd)
	}

	r = &Resolver{OCI: newStore(t), Min: &Builder{AgentBinary: agent}, KernelImage: kernelImage(builtinButRng)}
	if _, _, err := r.kernelFromImage(context.Background()); err == nil || !strings.Contains(err.Error(), `"virtio_rng" not found`) {
		t.Fatalf("a module that is only a link: %v, want not found", err)
	}
}
