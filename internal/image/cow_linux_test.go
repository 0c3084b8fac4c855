package image

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func requireQemuImg(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"qemu-img", "qemu-io"} {
		if _, err := lookTool(tool, "qemu-utils"); err != nil {
			t.Skip(err)
		}
	}
}

func TestChangedRuns(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	da := make([]byte, 6*4096)
	db := make([]byte, 8*4096)
	for i := range da {
		da[i] = 1
	}
	copy(db, da)
	db[4096] = 9       // block 1 differs
	db[2*4096+100] = 9 // block 2 too: one run
	db[7*4096] = 5     // past a's end, non-zero
	if err := os.WriteFile(a, da, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(b, db, 0o644); err != nil {
		t.Fatal(err)
	}
	runs, err := changedRuns(a, b, 4096)
	if err != nil {
		t.Fatal(err)
	}
	// Block 6 is zeros in b and past a's end, which reads as zeros: equal.
	want := []byteRun{{4096, 2 * 4096}, {7 * 4096, 4096}}
	if len(runs) != len(want) || runs[0] != want[0] || runs[1] != want[1] {
		t.Fatalf("runs %v, want %v", runs, want)
	}
}

func TestCloneQcow2OverlayIsThinAndGrown(t *testing.T) {
	requireQemuImg(t)
	dir := t.TempDir()
	src := smallExt4(t, dir)
	c := &Cloner{Qcow2: true}
	const size = 1 << 30
	var disks []string
	for _, name := range []string{"vm-1.img", "vm-2.img"} {
		dst := filepath.Join(dir, name)
		format, err := c.Clone(context.Background(), src, dst, size)
		if err != nil {
			t.Fatal(err)
		}
		if format != FormatQcow2 && !canReflink(src, dir) {
			t.Fatalf("format %q, want qcow2", format)
		}
		disks = append(disks, dst)
	}
	if canReflink(src, dir) {
		t.Skip("this file system reflinks: clones are raw")
	}
	grows, _ := filepath.Glob(filepath.Join(dir, "grow-*.qcow2"))
	if len(grows) != 1 {
		t.Fatalf("grow layers %v, want one shared by both disks", grows)
	}
	for _, d := range disks {
		if n := du(t, d); n > 1<<20 {
			t.Errorf("%s uses %d bytes on disk, want a thin overlay", d, n)
		}
	}
	// What the guest sees: a disk of size bytes whose ext4 fills it and is
	// clean, with the base's files.
	raw := filepath.Join(dir, "view.raw")
	if out, err := exec.Command("qemu-img", "convert", "-O", "raw", disks[0], raw).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert: %v %s", err, out)
	}
	if st, _ := os.Stat(raw); st.Size() != size {
		t.Fatalf("virtual size %d, want %d", st.Size(), size)
	}
	if got := fsSizeBytes(t, raw); got != size {
		t.Errorf("file system is %d bytes, want grown to %d", got, size)
	}
	e2fsck, _ := lookTool("e2fsck", "e2fsprogs")
	if out, err := exec.Command(e2fsck, "-fn", raw).CombinedOutput(); err != nil {
		t.Errorf("e2fsck: %v\n%s", err, out)
	}
	if got := debugfsRun(t, raw, "cat /etc/hello"); got != "hello\n" {
		t.Errorf("/etc/hello = %q", got)
	}

	users, err := DiskUsers(dir)
	if err != nil || strings.Join(users, ",") != strings.Join(disks, ",") {
		t.Fatalf("DiskUsers = %v, %v; want %v", users, err, disks)
	}
	os.Remove(disks[0])
	if users, _ := DiskUsers(dir); len(users) != 1 || users[0] != disks[1] {
		t.Fatalf("after deleting a disk, DiskUsers = %v", users)
	}
	recs, _ := os.ReadDir(filepath.Join(dir, "users"))
	if len(recs) != 1 {
		t.Fatalf("%d user records left, want the stale one pruned", len(recs))
	}
}

func TestCloneWithoutQcow2IsRaw(t *testing.T) {
	dir := t.TempDir()
	src := smallExt4(t, dir)
	format, err := (&Cloner{}).Clone(context.Background(), src, filepath.Join(dir, "vm.img"), 256<<20)
	if err != nil || format != FormatRaw {
		t.Fatalf("Clone = %q, %v; want raw", format, err)
	}
	if users, _ := DiskUsers(dir); len(users) != 0 {
		t.Fatalf("a raw copy registered as a user: %v", users)
	}
}

func du(t *testing.T, p string) int64 {
	t.Helper()
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return st.Sys().(*syscall.Stat_t).Blocks * 512
}
