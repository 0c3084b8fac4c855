package image

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"

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
