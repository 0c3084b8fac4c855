package qemu

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// memfdName is how QEMU 7.2 names the memfd of a memory-backend-memfd
// object; /proc/<pid>/fd shows it as "/memfd:<name> (deleted)".
const memfdName = "memory-backend-memfd"

// copyMemfd copies the guest RAM of a machine started with
// Spec.SharedMemory (a memfd QEMU keeps open) into a new file at dst, with
// the same size and holes where the memfd has never been written. The
// caller has stopped the vCPUs.
func (m *machine) copyMemfd(dst string) error {
	src, err := openMemfd(m.handle.PID)
	if err != nil {
		return err
	}
	defer src.Close()
	if err := copySparseTo(dst, src); err != nil {
		return fmt.Errorf("copy guest memory: %w", err)
	}
	return nil
}

// copySparseTo copies src into a new file at dst (copySparse).
func copySparseTo(dst string, src *os.File) error {
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if err := copySparse(out, src); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// openMemfd opens, through /proc, the guest RAM memfd of qemu process pid.
func openMemfd(pid int) (*os.File, error) {
	dir := filepath.Join("/proc", strconv.Itoa(pid), "fd")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("find the guest memory of qemu pid %d: %w", pid, err)
	}
	for _, e := range ents {
		link, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err == nil && strings.HasPrefix(link, "/memfd:"+memfdName+" ") {
			return os.Open(filepath.Join(dir, e.Name()))
		}
	}
	return nil, fmt.Errorf("find the guest memory of qemu pid %d: no %s among its descriptors", pid, memfdName)
}

// copySparse copies src to dst, which it sizes as src: only src's data
// regions (SEEK_DATA, SEEK_HOLE) are read and written, so dst has holes
// where src has.
func copySparse(dst, src *os.File) error {
	fi, err := src.Stat()
	if err != nil {
		return err
	}
	size := fi.Size()
	if err := dst.Truncate(size); err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	for off := int64(0); off < size; {
		data, err := unix.Seek(int(src.Fd()), off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			return nil // no data past off
		}
		if err != nil {
			return err
		}
		hole, err := unix.Seek(int(src.Fd()), data, unix.SEEK_HOLE)
		if err != nil {
			return err
		}
		r := io.NewSectionReader(src, data, hole-data)
		if _, err := io.CopyBuffer(io.NewOffsetWriter(dst, data), r, buf); err != nil {
			return err
		}
		off = hole
	}
	return nil
}
