package image

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// growCluster is the qcow2 cluster size of grow layers: they hold only the
// blocks resize2fs changed, so small clusters keep them small.
const growCluster = 4096

// Cloner makes a VM's root disk from an image's read-only ext4 base, as
// thin as the host allows:
//
//  1. a reflink of the base (btrfs, xfs), grown with resize2fs: raw;
//  2. when the backend reads qcow2 (QEMU) and qemu-img is installed, a
//     qcow2 overlay backed by the base: qcow2. Its virtual size is the
//     VM's disk size, and the file system in it is already grown: the
//     overlay's backing file is a grow layer, made once per base and size
//     (grow-<bytes>.qcow2 next to the base), which holds only the blocks
//     resize2fs changes to grow the base to that size. So a VM's disk
//     starts at a few hundred KiB, and the guest needs no resize;
//  3. otherwise a sparse copy, grown: raw.
//
// A qcow2 clone is registered in <base dir>/users/ so that removing the
// image can tell it is in use (see Users).
type Cloner struct {
	Qcow2 bool
	Log   *slog.Logger
}

// Clone makes dst from the base src with a disk of size bytes (a smaller
// size leaves the base's size) and returns the disk's format. dst appears
// only when complete.
func (c *Cloner) Clone(ctx context.Context, src, dst string, size int64) (string, error) {
	if canReflink(src, filepath.Dir(dst)) {
		return FormatRaw, Clone(ctx, src, dst, size)
	}
	if c.Qcow2 {
		if _, err := lookTool("qemu-img", "qemu-utils"); err == nil {
			return FormatQcow2, c.overlay(ctx, src, dst, size)
		}
		c.logger().Warn("qemu-img not found: VM disks are full copies (apt-get install qemu-utils)")
	}
	return FormatRaw, Clone(ctx, src, dst, size)
}

// canReflink reports whether a file in dir can share src's blocks.
func canReflink(src, dir string) bool {
	in, err := os.Open(src)
	if err != nil {
		return false
	}
	defer in.Close()
	f, err := os.CreateTemp(dir, ".reflink-probe-")
	if err != nil {
		return false
	}
	defer os.Remove(f.Name())
	defer f.Close()
	return unix.IoctlFileClone(int(f.Fd()), int(in.Fd())) == nil
}

// overlay makes dst a qcow2 overlay of src's grow layer for size.
func (c *Cloner) overlay(ctx context.Context, src, dst string, size int64) error {
	base, err := filepath.Abs(src)
	if err != nil {
		return err
	}
	dir := filepath.Dir(base)
	unlock, err := lockShared(ctx, filepath.Join(dir, ".users.lock"))
	if err != nil {
		return fmt.Errorf("lock image %s: %w", dir, err)
	}
	defer unlock()
	if err := registerUser(dir, dst); err != nil {
		return err
	}
	backing, backingFmt := base, FormatRaw
	if size > fileSize(base) {
		if backing, err = c.growLayer(ctx, base, size); err != nil {
			unregisterUser(dir, dst)
			return err
		}
		backingFmt = FormatQcow2
	}
	tmp := dst + ".tmp"
	err = run(ctx, "qemu-img", "qemu-utils", "create", "-q", "-f", "qcow2", "-F", backingFmt, "-b", backing, tmp)
	if err == nil {
		err = os.Rename(tmp, dst)
	}
	if err != nil {
		os.Remove(tmp)
		unregisterUser(dir, dst)
		return fmt.Errorf("clone disk %q: %w", dst, err)
	}
	return nil
}

// growLayer returns <dir>/grow-<size>.qcow2, making it first if needed: a
// qcow2 image backed by base, with a virtual size of size, holding exactly
// the blocks in which base grown to size by resize2fs differs from base.
// Making it costs one transient sparse copy of base.
func (c *Cloner) growLayer(ctx context.Context, base string, size int64) (string, error) {
	dir := filepath.Dir(base)
	layer := filepath.Join(dir, "grow-"+strconv.FormatInt(size, 10)+".qcow2")
	if _, err := os.Stat(layer); err == nil {
		return layer, nil
	}
	unlock, err := lockDir(ctx, filepath.Join(dir, ".grow.lock"), func() {})
	if err != nil {
		return "", err
	}
	defer unlock()
	if _, err := os.Stat(layer); err == nil {
		return layer, nil // made while we waited
	}
	work, err := os.MkdirTemp(dir, ".grow-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(work)
	grown := filepath.Join(work, "grown.raw")
	if err := Clone(ctx, base, grown, size); err != nil {
		return "", err
	}
	runs, err := changedRuns(base, grown, growCluster)
	if err != nil {
		return "", err
	}
	tmp := filepath.Join(work, "layer.qcow2")
	if err := run(ctx, "qemu-img", "qemu-utils", "create", "-q", "-f", "qcow2", "-o", "cluster_size="+strconv.Itoa(growCluster),
		"-F", FormatRaw, "-b", base, tmp, strconv.FormatInt(size, 10)); err != nil {
		return "", err
	}
	if err := writeRuns(ctx, grown, tmp, work, runs); err != nil {
		return "", err
	}
	if err := os.Chmod(tmp, 0o444); err != nil {
		return "", err
	}
	if err := syncPath(tmp); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, layer); err != nil {
		return "", err
	}
	var n int64
	for _, r := range runs {
		n += r.len
	}
	c.logger().Info("made grow layer", "base", base, "size", size, "changed_bytes", n, "runs", len(runs))
	return layer, nil
}

// byteRun is a range of bytes.
type byteRun struct{ off, len int64 }

// changedRuns returns the runs of block-sized blocks where b differs from
// a (read past a's end as zeros), looking only where either file has data.
func changedRuns(a, b string, block int64) ([]byteRun, error) {
	fa, err := os.Open(a)
	if err != nil {
		return nil, err
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return nil, err
	}
	defer fb.Close()
	size := fileSize(b)
	blocks := map[int64]bool{}
	for _, f := range []*os.File{fa, fb} {
		if err := dataBlocks(f, min(fileSize(f.Name()), size), block, blocks); err != nil {
			return nil, err
		}
	}
	sorted := make([]int64, 0, len(blocks))
	for off := range blocks {
		sorted = append(sorted, off)
	}
	slices.Sort(sorted)
	bufA, bufB := make([]byte, block), make([]byte, block)
	var runs []byteRun
	for _, off := range sorted {
		na, err := fa.ReadAt(bufA, off)
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		clear(bufA[na:])
		nb, err := fb.ReadAt(bufB, off)
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		clear(bufB[nb:])
		if bytes.Equal(bufA, bufB) {
			continue
		}
		if n := len(runs); n > 0 && runs[n-1].off+runs[n-1].len == off {
			runs[n-1].len += block
		} else {
			runs = append(runs, byteRun{off, block})
		}
	}
	return runs, nil
}

// dataBlocks adds the offsets of the blocks of f's first size bytes that
// hold data (SEEK_DATA/SEEK_HOLE) to set.
func dataBlocks(f *os.File, size, block int64, set map[int64]bool) error {
	for off := int64(0); off < size; {
		data, err := unix.Seek(int(f.Fd()), off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			return nil
		}
		if err != nil {
			data = off
		}
		hole, err := unix.Seek(int(f.Fd()), data, unix.SEEK_HOLE)
		if err != nil {
			hole = size
		}
		hole = min(hole, size)
		for b := data / block * block; b < hole; b += block {
			set[b] = true
		}
		off = hole
	}
	return nil
}

// writeRuns copies the runs of src into the qcow2 image dst with qemu-io,
// one pattern file per run in work.
func writeRuns(ctx context.Context, src, dst, work string, runs []byteRun) error {
	if len(runs) == 0 {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	var script strings.Builder
	for i, r := range runs {
		buf := make([]byte, r.len)
		if _, err := in.ReadAt(buf, r.off); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		p := filepath.Join(work, "run"+strconv.Itoa(i))
		if err := os.WriteFile(p, buf, 0o600); err != nil {
			return err
		}
		fmt.Fprintf(&script, "write -q -s %s %d %d\n", p, r.off, r.len)
	}
	qio, err := lookTool("qemu-io", "qemu-utils")
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, qio, "-f", FormatQcow2, dst)
	cmd.Stdin = strings.NewReader(script.String())
	out, err := cmd.CombinedOutput()
	// qemu-io exits 0 even when a command fails: anything but its prompt
	// is an error.
	rest := strings.TrimSpace(strings.ReplaceAll(string(out), "qemu-io>", ""))
	if err != nil || rest != "" {
		return fmt.Errorf("qemu-io write %s: %v: %s", dst, err, rest)
	}
	return nil
}

// registerUser records that the disk dst uses the image in dir.
func registerUser(dir, dst string) error {
	abs, err := filepath.Abs(dst)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(dir, "users"), 0o755); err != nil {
		return err
	}
	return os.WriteFile(userFile(dir, abs), []byte(abs+"\n"), 0o644)
}

func unregisterUser(dir, dst string) {
	if abs, err := filepath.Abs(dst); err == nil {
		os.Remove(userFile(dir, abs))
	}
}

func userFile(dir, disk string) string {
	sum := sha256.Sum256([]byte(disk))
	return filepath.Join(dir, "users", hex.EncodeToString(sum[:16]))
}

func fileSize(p string) int64 {
	st, err := os.Stat(p)
	if err != nil {
		return 0
	}
	return st.Size()
}

func (c *Cloner) logger() *slog.Logger {
	if c.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Log
}
