package image

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

func TestCachedKernelLooksInDebs(t *testing.T) {
	dir := t.TempDir()
	if got, err := CachedKernel(dir); got != "" || err != nil {
		t.Fatalf("CachedKernel(empty) = %q, %v; want none", got, err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "debs"), 0o755); err != nil {
		t.Fatal(err)
	}
	deb := filepath.Join(dir, "debs", "linux-image-6.1.0-56-cloud-"+runtime.GOARCH+"_6.1.192-2_"+runtime.GOARCH+".deb")
	if err := os.WriteFile(deb, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := CachedKernel(dir); got != deb || err != nil {
		t.Errorf("CachedKernel() = %q, %v; want %q", got, err, deb)
	}
}

func TestCheckMkfsLeavesNothing(t *testing.T) {
	if _, err := lookTool("mkfs.ext4", "e2fsprogs"); err != nil {
		t.Skip("needs mkfs.ext4 (apt-get install e2fsprogs)")
	}
	tmp := t.TempDir()
	if _, err := CheckMkfs(context.Background(), tmp); err != nil {
		t.Fatalf("CheckMkfs: %v", err)
	}
	left, _ := os.ReadDir(tmp)
	if len(left) != 0 {
		t.Errorf("CheckMkfs left %d entries in %s", len(left), tmp)
	}
}

func TestCheckMkfsReportsAMissingDirectory(t *testing.T) {
	if _, err := lookTool("mkfs.ext4", "e2fsprogs"); err != nil {
		t.Skip("needs mkfs.ext4 (apt-get install e2fsprogs)")
	}
	if _, err := CheckMkfs(context.Background(), filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("CheckMkfs in a missing directory succeeded")
	}
}
