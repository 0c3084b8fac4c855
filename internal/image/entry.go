package image

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// entry is one file of an image tree, planned before anything is written.
// The same plan feeds the cpio writer (initramfs) and the staging directory
// that mkfs.ext4 copies (root filesystem).
type entry struct {
	Path     string      // slash-separated, relative to the root: "etc/passwd"
	Mode     fs.FileMode // type bits and permissions, including sticky/setuid
	UID, GID int
	Data     []byte // content of a regular file when Src is empty
	Src      string // host file copied as the content of a regular file
	Target   string // symlink target
	// Major, Minor number a device node.
	Major, Minor uint32
}

func dirEntry(p string, perm fs.FileMode) entry {
	return entry{Path: p, Mode: fs.ModeDir | perm}
}

func fileEntry(p string, perm fs.FileMode, data string) entry {
	return entry{Path: p, Mode: perm, Data: []byte(data)}
}

func copyEntry(p string, perm fs.FileMode, src string) entry {
	return entry{Path: p, Mode: perm, Src: src}
}

func symlinkEntry(p, target string) entry {
	return entry{Path: p, Mode: fs.ModeSymlink | 0o777, Target: target}
}

// checkPath rejects paths that would escape the image root.
func checkPath(p string) error {
	if p == "" || strings.HasPrefix(p, "/") || path.Clean(p) != p || p == ".." || strings.HasPrefix(p, "../") {
		return fmt.Errorf("path %q is not a clean relative path", p)
	}
	return nil
}

// stageTree writes entries under dir. Parents must come before children.
// Owners are not applied here (that needs root); the caller fixes them in
// the finished filesystem.
func stageTree(dir string, entries []entry) error {
	for _, e := range entries {
		if err := stageEntry(dir, e); err != nil {
			return fmt.Errorf("stage %q: %w", e.Path, err)
		}
	}
	return nil
}

func stageEntry(dir string, e entry) error {
	if err := checkPath(e.Path); err != nil {
		return err
	}
	dst := filepath.Join(dir, filepath.FromSlash(e.Path))
	switch {
	case e.Mode.IsDir():
		if err := os.Mkdir(dst, 0o755); err != nil && !os.IsExist(err) {
			return err
		}
	case e.Mode&fs.ModeSymlink != 0:
		return os.Symlink(e.Target, dst)
	case e.Mode.IsRegular() && e.Src != "":
		if err := copyFile(e.Src, dst); err != nil {
			return err
		}
	case e.Mode.IsRegular():
		if err := os.WriteFile(dst, e.Data, 0o600); err != nil {
			return err
		}
	default:
		return fmt.Errorf("cannot stage file mode %v", e.Mode)
	}
	// Chmod after creation so the umask does not matter.
	return os.Chmod(dst, e.Mode&(fs.ModePerm|fs.ModeSticky|fs.ModeSetuid|fs.ModeSetgid))
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
