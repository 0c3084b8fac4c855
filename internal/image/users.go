package image

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Disk formats a clone can have.
const (
	FormatRaw   = "raw"
	FormatQcow2 = "qcow2"
)

// UsageChecker tells which VMs use an image beyond what the image's own
// records show (Cloner registers each qcow2 overlay it makes in
// <image dir>/users/). A daemon can satisfy it from its VM store; the
// image commands pass nil when no daemon is asked.
type UsageChecker interface {
	// DisksUsing lists the VM disks that need the image in dir.
	DisksUsing(ctx context.Context, dir string) ([]string, error)
}

// DiskUsers lists the VM disks using the image in dir: every disk
// registered in dir/users that still exists and is a qcow2 image whose
// backing file lies in dir (the base or one of its grow layers). Records
// of disks since deleted or replaced are removed. A raw disk (reflink or
// copy) shares nothing with the base once made, so it is not a user.
func DiskUsers(dir string) ([]string, error) {
	ents, err := os.ReadDir(filepath.Join(dir, "users"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var users []string
	for _, e := range ents {
		rec := filepath.Join(dir, "users", e.Name())
		data, err := os.ReadFile(rec)
		if err != nil {
			continue
		}
		disk := strings.TrimSpace(string(data))
		if usesDir(disk, dir) {
			users = append(users, disk)
			continue
		}
		os.Remove(rec) // stale
	}
	sort.Strings(users)
	return users, nil
}

// usesDir reports whether disk is a qcow2 image backed by a file in dir.
func usesDir(disk, dir string) bool {
	f, err := os.Open(disk)
	if err != nil {
		return false
	}
	defer f.Close()
	backing, err := qcow2Backing(f)
	if err != nil || backing == "" {
		return false
	}
	return filepath.Dir(backing) == filepath.Clean(dir)
}

// qcow2Backing reads the backing file name from a qcow2 header ("" when
// it has none); a file that is not qcow2 is an error.
func qcow2Backing(r io.ReaderAt) (string, error) {
	var h [20]byte
	if _, err := r.ReadAt(h[:], 0); err != nil {
		return "", err
	}
	if string(h[:4]) != "QFI\xfb" {
		return "", errors.New("not a qcow2 image")
	}
	off := binary.BigEndian.Uint64(h[8:16])
	n := binary.BigEndian.Uint32(h[16:20])
	if off == 0 || n == 0 {
		return "", nil
	}
	if n > 1023 {
		return "", fmt.Errorf("qcow2 backing file name of %d bytes", n)
	}
	name := make([]byte, n)
	if _, err := r.ReadAt(name, int64(off)); err != nil {
		return "", err
	}
	return string(name), nil
}
