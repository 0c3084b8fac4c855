//go:build !linux

package image

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"runtime"
)

// Images are built and cloned with Linux tools and system calls only; on
// other systems the package compiles but refuses to run.
var errOS = fmt.Errorf("images need Linux, not %s", runtime.GOOS)

func lockDir(ctx context.Context, path string, waiting func()) (func(), error) {
	return nil, errOS
}

func fileOwner(fi fs.FileInfo) (uid, gid int, err error) {
	return 0, 0, errors.New("no owner information")
}

func syncTree(dir string) error { return errOS }

func syncDir(dir string) error { return errOS }

// Clone makes the per-VM root disk; see clone_linux.go.
func Clone(ctx context.Context, src, dst string, size int64) error {
	return fmt.Errorf("clone disk %q: %w", dst, errOS)
}

func inodeOf(fi fs.FileInfo) uint64 { return 0 }

func lockShared(ctx context.Context, path string) (func(), error) { return nil, errOS }

// Cloner makes VM disks; see cow_linux.go.
type Cloner struct {
	Qcow2 bool
	Log   *slog.Logger
}

// Clone refuses: disks are made with Linux tools.
func (c *Cloner) Clone(ctx context.Context, src, dst string, size int64) (string, error) {
	return "", fmt.Errorf("clone disk %q: %w", dst, errOS)
}

func allocatedBytes(fi fs.FileInfo) int64 { return fi.Size() }
