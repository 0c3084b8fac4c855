package image

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// DiskLayers turns a stopped VM's disk into a commit's read-only layer,
// and makes copy-on-write disks over such layers (the vm package's
// Layers).
//
// A qcow2 disk is an overlay over the image (Cloner). Freezing it moves
// the disk itself to the layer's path, read-only, and puts a new, empty
// qcow2 overlay over the layer at the disk's path: the VM reads what it
// did and writes apart from the layer, and freezing costs a rename and a
// qemu-img create whatever the disk holds. A disk made over the layer
// (Overlay) is a qcow2 overlay too, so every fork starts at a few hundred
// KiB. Backing files are named by absolute path, so a chain stays valid
// wherever the daemon runs from. A layer whose backing file is in an
// image's directory is registered there (users/), as the disk was, so
// removing the image is refused while the layer exists.
//
// A raw disk (a reflink or a sparse copy of the image) shares nothing, so
// its layer is a reflink of it where the file system can share blocks, a
// sparse copy otherwise, and a disk over a raw layer is the same again.
// The VM keeps its disk as it is.
type DiskLayers struct {
	Log *slog.Logger
}

// Freeze makes layer, a read-only disk layer holding what the disk at disk
// (of format "qcow2" or "raw") holds now, and leaves at disk a disk of the
// same format that reads the same and whose writes leave the layer alone.
// layer must be an absolute path. On failure what was done is undone
// (Unfreeze).
func (l *DiskLayers) Freeze(ctx context.Context, disk, format, layer string) error {
	if !filepath.IsAbs(layer) || !filepath.IsAbs(disk) {
		return fmt.Errorf("freeze %s: disk and layer must be absolute paths (layer %q)", disk, layer)
	}
	if err := os.MkdirAll(filepath.Dir(layer), 0o755); err != nil {
		return err
	}
	var err error
	switch format {
	case FormatQcow2:
		err = l.freezeQcow2(ctx, disk, layer)
	case FormatRaw, "":
		if err = Clone(ctx, disk, layer, 0); err == nil {
			err = sealLayer(layer)
		}
	default:
		err = fmt.Errorf("disk format %q cannot be committed", format)
	}
	if err != nil {
		err = fmt.Errorf("freeze disk %s: %w", disk, err)
		if uerr := l.Unfreeze(disk, format, layer); uerr != nil {
			err = errors.Join(err, fmt.Errorf("undo: %w", uerr))
		}
	}
	return err
}

func (l *DiskLayers) freezeQcow2(ctx context.Context, disk, layer string) error {
	unlock, imageDir, err := lockBackingImage(ctx, disk)
	if err != nil {
		return err
	}
	defer unlock()
	if err := moveFile(ctx, disk, layer); err != nil {
		return err
	}
	if imageDir != "" {
		if err := registerUser(imageDir, layer); err != nil {
			return err
		}
	}
	if err := newOverlay(ctx, layer, FormatQcow2, disk); err != nil {
		return err
	}
	return sealLayer(layer)
}

// Unfreeze undoes a Freeze of disk into layer that was cut short, from
// what it finds on disk, so it can run after a crash at any step, and
// again: the disk is left as it was before the Freeze, and layer removed.
// (The layer's directory is the caller's.)
func (l *DiskLayers) Unfreeze(disk, format, layer string) error {
	if format != FormatQcow2 {
		return errors.Join(removeIfExists(layer+".tmp"), removeIfExists(layer))
	}
	errs := []error{removeIfExists(disk + ".tmp"), removeIfExists(layer + ".tmp")}
	_, err := os.Lstat(layer)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return errors.Join(errs...) // never moved, or moved back
	case err != nil:
		return err
	}
	unlock, imageDir, err := lockBackingImage(context.Background(), layer)
	if err != nil {
		return err
	}
	defer unlock()
	if overlayOf(disk, layer) {
		// The disk is the new, empty overlay: the VM's blocks are all in
		// the layer, which goes back in its place.
		errs = append(errs, removeIfExists(disk))
	}
	if _, err := os.Lstat(disk); err == nil {
		// The disk is the original (a copy of it had begun at the layer's
		// path): the layer is the extra.
		errs = append(errs, removeIfExists(layer))
	} else {
		errs = append(errs, os.Chmod(layer, 0o644), moveFile(context.Background(), layer, disk))
	}
	if imageDir != "" {
		unregisterUser(imageDir, layer)
		errs = append(errs, registerUser(imageDir, disk))
	}
	return errors.Join(errs...)
}

// Overlay makes dst a disk over the layer (of layerFormat, as Freeze made
// it) and returns its format: a qcow2 overlay over a qcow2 layer; a
// reflink or sparse copy of a raw one. dst appears only when complete.
func (l *DiskLayers) Overlay(ctx context.Context, layer, layerFormat, dst string) (string, error) {
	if _, err := os.Stat(layer); err != nil {
		return "", fmt.Errorf("disk layer: %w", err)
	}
	if layerFormat != FormatQcow2 {
		return FormatRaw, Clone(ctx, layer, dst, 0)
	}
	if err := newOverlay(ctx, layer, FormatQcow2, dst); err != nil {
		return "", fmt.Errorf("disk over layer %s: %w", layer, err)
	}
	return FormatQcow2, nil
}

// Drop removes the layer (and its registration with an image); a missing
// layer is not an error. The caller makes sure no disk is over it.
func (l *DiskLayers) Drop(layer string) error {
	if backing, err := backingOf(layer); err == nil && backing != "" {
		if dir := filepath.Dir(backing); isImageDir(dir) {
			unregisterUser(dir, layer)
		}
	}
	return errors.Join(removeIfExists(layer+".tmp"), removeIfExists(layer))
}

// newOverlay makes dst, an empty qcow2 overlay over backing (of format
// backingFmt, named by its absolute path), through dst.tmp.
func newOverlay(ctx context.Context, backing, backingFmt, dst string) error {
	abs, err := filepath.Abs(backing)
	if err != nil {
		return err
	}
	tmp := dst + ".tmp"
	err = run(ctx, "qemu-img", "qemu-utils", "create", "-q", "-f", FormatQcow2, "-F", backingFmt, "-b", abs, tmp)
	if err == nil {
		err = syncPath(tmp)
	}
	if err == nil {
		err = os.Rename(tmp, dst)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(filepath.Dir(dst))
}

// sealLayer makes a finished layer read-only and durable.
func sealLayer(layer string) error {
	if err := os.Chmod(layer, 0o444); err != nil {
		return err
	}
	if err := syncPath(layer); err != nil {
		return err
	}
	return syncDir(filepath.Dir(layer))
}

// moveFile renames src to dst, or copies it (reflink or sparse copy) and
// removes src when they are on different file systems. dst is complete
// before src goes.
func moveFile(ctx context.Context, src, dst string) error {
	err := os.Rename(src, dst)
	if errors.Is(err, unix.EXDEV) {
		if err = Clone(ctx, src, dst, 0); err == nil {
			err = os.Remove(src)
		}
	}
	if err != nil {
		return err
	}
	return errors.Join(syncDir(filepath.Dir(dst)), syncDir(filepath.Dir(src)))
}

// lockBackingImage takes the shared lock of the image whose directory
// holds disk's backing file, when it is an image's, and returns that
// directory ("" otherwise): an image is not removed while a layer over it
// is being registered.
func lockBackingImage(ctx context.Context, disk string) (unlock func(), imageDir string, err error) {
	backing, err := backingOf(disk)
	if err != nil || backing == "" || !isImageDir(filepath.Dir(backing)) {
		return func() {}, "", nil
	}
	dir := filepath.Dir(backing)
	unlock, err = lockShared(ctx, filepath.Join(dir, ".users.lock"))
	if err != nil {
		return nil, "", fmt.Errorf("lock image %s: %w", dir, err)
	}
	return unlock, dir, nil
}

// isImageDir reports whether dir is an image's directory whose disks are
// registered (Cloner keeps users/ there).
func isImageDir(dir string) bool {
	st, err := os.Stat(filepath.Join(dir, "users"))
	return err == nil && st.IsDir()
}

// backingOf is the backing file named in the qcow2 header of path ("" for
// none; an error for a file that is not qcow2).
func backingOf(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	return qcow2Backing(f)
}

// overlayOf reports whether disk is a qcow2 image whose backing file is
// layer.
func overlayOf(disk, layer string) bool {
	b, err := backingOf(disk)
	if err != nil || b == "" {
		return false
	}
	abs, _ := filepath.Abs(layer)
	return filepath.Clean(b) == abs
}

func removeIfExists(p string) error {
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
