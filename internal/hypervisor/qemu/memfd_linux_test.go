package qemu

import (
	"bytes"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/openslicer/openslicer/internal/hypervisor"
)

// TestCopyMemfd: the guest memory is found among the process's
// descriptors by QEMU's memfd name, and copied with its size, its data,
// and holes where it has none.
func TestCopyMemfd(t *testing.T) {
	fd, err := unix.MemfdCreate(memfdName, unix.MFD_CLOEXEC)
	if err != nil {
		t.Skipf("memfd_create: %v", err)
	}
	mem := os.NewFile(uintptr(fd), "memfd")
	defer mem.Close()
	const size = 64 << 20
	if err := mem.Truncate(size); err != nil {
		t.Fatal(err)
	}
	pages := map[int64][]byte{0: bytes.Repeat([]byte{1}, 4096), 32 << 20: bytes.Repeat([]byte{2}, 8192), size - 4096: []byte("last page")}
	for off, b := range pages {
		if _, err := mem.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
	}

	dst := filepath.Join(t.TempDir(), "memory")
	m := &machine{handle: hypervisor.Handle{PID: os.Getpid()}}
	if err := m.copyMemfd(dst); err != nil {
		t.Fatalf("copyMemfd: %v", err)
	}
	got, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]byte, size)
	for off, b := range pages {
		copy(want[off:], b)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("the copy differs from the memory (%d bytes, want %d)", len(got), len(want))
	}
	var st syscall.Stat_t
	if err := syscall.Stat(dst, &st); err != nil {
		t.Fatal(err)
	}
	if st.Blocks*512 >= size/2 {
		t.Errorf("the copy takes %d bytes on disk: the memory's holes were written", st.Blocks*512)
	}
}

// TestOpenMemfdNone: a process without the guest memory's memfd is an
// error naming it.
func TestOpenMemfdNone(t *testing.T) {
	if f, err := openMemfd(1<<22 + 12345); err == nil {
		f.Close()
		t.Error("openMemfd of a process that does not exist succeeded")
	}
}
