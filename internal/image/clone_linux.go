package image

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"

	"golang.org/x/sys/unix"
)

// Clone makes dst, one VM's root disk, from the image's ext4 file src: a
// reflink when the filesystem can share blocks (btrfs, xfs), otherwise a
// copy that leaves holes where src has holes or zero blocks. When size is
// larger than src, the file and the ext4 filesystem in it are grown to size
// (resize2fs); a smaller size leaves the disk at src's size. dst appears
// only when complete: the work happens in dst.tmp, removed on any error.
func Clone(ctx context.Context, src, dst string, size int64) error {
	tmp := dst + ".tmp"
	if err := clone(ctx, src, tmp, size); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("clone disk %q: %w", dst, err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("clone disk %q: %w", dst, err)
	}
	return nil
}

func clone(ctx context.Context, src, dst string, size int64) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer out.Close()
	if err := unix.IoctlFileClone(int(out.Fd()), int(in.Fd())); err != nil {
		if err := copySparse(ctx, in, out, st.Size()); err != nil {
			return fmt.Errorf("copy %s: %w", src, err)
		}
	}
	if size > st.Size() {
		if err := out.Truncate(size); err != nil {
			return err
		}
	}
	if err := out.Sync(); err != nil {
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	if size > st.Size() {
		return growExt4(ctx, dst)
	}
	return nil
}

// growExt4 grows the ext4 filesystem in file to the file's size. -f skips
// resize2fs's demand for a fresh e2fsck: the source is an image that was
// never mounted read-write since mkfs.
func growExt4(ctx context.Context, file string) error {
	resize2fs, err := lookTool("resize2fs", "e2fsprogs")
	if err != nil {
		return err
	}
	if out, err := exec.CommandContext(ctx, resize2fs, "-f", file).CombinedOutput(); err != nil {
		return fmt.Errorf("resize2fs: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// copySparse copies the first size bytes of in to the empty file out,
// reading only the data regions of in (SEEK_DATA/SEEK_HOLE) and writing
// only blocks that are not all zero, so out stays at least as sparse as in.
func copySparse(ctx context.Context, in, out *os.File, size int64) error {
	buf := make([]byte, 1<<20)
	for off := int64(0); off < size; {
		data, err := unix.Seek(int(in.Fd()), off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // only a hole is left
		}
		if err != nil {
			data = off // no SEEK_DATA here: treat the rest as data
		}
		hole, err := unix.Seek(int(in.Fd()), data, unix.SEEK_HOLE)
		if err != nil {
			hole = size
		}
		hole = min(hole, size)
		if err := copyRange(ctx, in, out, data, hole, buf); err != nil {
			return err
		}
		off = hole
	}
	return out.Truncate(size)
}

// copyRange copies [from, to) of in to the same offsets in out, skipping
// 4 KiB blocks of zeros.
func copyRange(ctx context.Context, in, out *os.File, from, to int64, buf []byte) error {
	const block = 4096
	zero := make([]byte, block)
	for off := from; off < to; {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := in.ReadAt(buf[:min(int64(len(buf)), to-off)], off)
		if err != nil && !(errors.Is(err, io.EOF) && n > 0) {
			return err
		}
		// Write each run of non-zero blocks with one call.
		run := -1
		for i := 0; i < n; i += block {
			end := min(i+block, n)
			if !bytes.Equal(buf[i:end], zero[:end-i]) {
				if run < 0 {
					run = i
				}
				continue
			}
			if run >= 0 {
				if _, err := out.WriteAt(buf[run:i], off+int64(run)); err != nil {
					return err
				}
				run = -1
			}
		}
		if run >= 0 {
			if _, err := out.WriteAt(buf[run:n], off+int64(run)); err != nil {
				return err
			}
		}
		off += int64(n)
	}
	return nil
}
