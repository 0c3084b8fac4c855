package image

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

const testDigest = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

// smallExt4 makes an ext4 file holding one file, the way the image builder
// makes the root filesystem.
func smallExt4(t testing.TB, dir string) string {
	t.Helper()
	for _, tool := range []string{"mkfs.ext4", "resize2fs"} {
		if _, err := lookTool(tool, "e2fsprogs"); err != nil {
			t.Skip(err)
		}
	}
	staging := filepath.Join(dir, "staging")
	es := []entry{dirEntry("etc", 0o755), fileEntry("etc/hello", 0o644, "hello\n")}
	src := filepath.Join(dir, "src.ext4")
	if err := buildRootfs(context.Background(), es, staging, src, testDigest); err != nil {
		t.Fatalf("build test filesystem: %v", err)
	}
	return src
}

func TestCloneGrows(t *testing.T) {
	dir := t.TempDir()
	src := smallExt4(t, dir)
	srcSize := fsSizeBytes(t, src)
	dst := filepath.Join(dir, "vm.img")
	const size = 1 << 30
	if err := Clone(context.Background(), src, dst, size); err != nil {
		t.Fatalf("Clone() = %v", err)
	}
	if st, err := os.Stat(dst); err != nil || st.Size() != size {
		t.Fatalf("stat clone = %v, %v; want %d bytes", st, err, size)
	}
	if got := fsSizeBytes(t, dst); got != size {
		t.Errorf("filesystem in clone is %d bytes, want %d", got, size)
	}
	if got := fsSizeBytes(t, src); got != srcSize {
		t.Errorf("source filesystem changed size: %d, was %d", got, srcSize)
	}
	if _, err := os.Stat(dst + ".tmp"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stat %s.tmp = %v, want not exist", dst, err)
	}
	e2fsck, err := lookTool("e2fsck", "e2fsprogs")
	if err != nil {
		t.Skip(err)
	}
	if out, err := exec.Command(e2fsck, "-fn", dst).CombinedOutput(); err != nil {
		t.Errorf("e2fsck -fn clone: %v\n%s", err, out)
	}
}

func TestCloneSmallerSizeKeepsSource(t *testing.T) {
	dir := t.TempDir()
	src := smallExt4(t, dir)
	dst := filepath.Join(dir, "vm.img")
	if err := Clone(context.Background(), src, dst, 1<<20); err != nil {
		t.Fatalf("Clone() = %v", err)
	}
	a, _ := os.Stat(src)
	b, err := os.Stat(dst)
	if err != nil || b.Size() != a.Size() {
		t.Errorf("clone size = %v, %v; want the source's %d", b, err, a.Size())
	}
}

func TestCloneErrorLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	dst := filepath.Join(dir, "vm.img")
	if err := Clone(context.Background(), filepath.Join(dir, "missing"), dst, 1<<30); err == nil {
		t.Fatalf("Clone(missing source) = nil, want an error")
	}
	// A source that is not ext4 fails at resize2fs, after the copy.
	notFS := filepath.Join(dir, "zeros")
	if err := os.WriteFile(notFS, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := lookTool("resize2fs", "e2fsprogs"); err == nil {
		if err := Clone(context.Background(), notFS, dst, 1<<30); err == nil {
			t.Fatalf("Clone(not ext4) = nil, want an error")
		}
	}
	for _, p := range []string{dst, dst + ".tmp"} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("stat %s = %v, want not exist", p, err)
		}
	}
}

func TestCopySparse(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	f, err := os.Create(src)
	if err != nil {
		t.Fatal(err)
	}
	// data, a hole, a run of written zeros, data ending mid-block, a hole.
	data1 := bytes.Repeat([]byte("a"), 3*4096+17)
	zeros := make([]byte, 8<<20)
	data2 := bytes.Repeat([]byte("b"), 5000)
	const size = 64 << 20
	for _, w := range []struct {
		b   []byte
		off int64
	}{{data1, 0}, {zeros, 16 << 20}, {data2, 16<<20 + 8<<20 + 100}} {
		if _, err := f.WriteAt(w.b, w.off); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()

	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	dst := filepath.Join(dir, "dst")
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	if err := copySparse(context.Background(), in, out, size); err != nil {
		t.Fatalf("copySparse() = %v", err)
	}
	out.Close()

	a, _ := os.ReadFile(src)
	b, _ := os.ReadFile(dst)
	if !bytes.Equal(a, b) {
		t.Fatalf("copy differs from source (%d vs %d bytes)", len(b), len(a))
	}
	st, _ := os.Stat(dst)
	allocated := st.Sys().(*syscall.Stat_t).Blocks * 512
	if allocated > 1<<20 {
		t.Errorf("copy allocates %d bytes, want under 1 MiB (holes and zero blocks skipped)", allocated)
	}
}

func TestCopySparseHonoursContext(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	if err := os.WriteFile(src, bytes.Repeat([]byte("x"), 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	in, _ := os.Open(src)
	defer in.Close()
	out, _ := os.Create(filepath.Join(dir, "dst"))
	defer out.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := copySparse(ctx, in, out, 1<<20); !errors.Is(err, context.Canceled) {
		t.Errorf("copySparse(cancelled) = %v, want context.Canceled", err)
	}
}

func TestLockDirWaitsForOtherHolder(t *testing.T) {
	p := filepath.Join(t.TempDir(), ".lock")
	unlock, err := lockDir(context.Background(), p, func() { t.Errorf("first lock waited") })
	if err != nil {
		t.Fatalf("lockDir() = %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	waited := false
	if _, err := lockDir(ctx, p, func() { waited = true }); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("second lockDir() = %v, want context.DeadlineExceeded", err)
	}
	if !waited {
		t.Errorf("second lockDir() did not report waiting")
	}
	unlock()
	unlock2, err := lockDir(context.Background(), p, func() { t.Errorf("lock after unlock waited") })
	if err != nil {
		t.Fatalf("lockDir() after unlock = %v", err)
	}
	unlock2()
}
