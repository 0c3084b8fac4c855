package image

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/openslicer/openslicer/internal/image/unpack"
)

// treeSize is what mkfs.ext4 needs to hold a staged tree.
type treeSize struct {
	Bytes  int64 // data blocks of files, directories and long symlinks
	Inodes int64
}

// measureTree adds up the 4 KiB blocks and the inodes of a staged tree.
func measureTree(dir string) (treeSize, error) {
	var s treeSize
	seen := map[uint64]bool{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		st, err := d.Info()
		if err != nil {
			return err
		}
		if ino := inodeOf(st); ino != 0 {
			if seen[ino] {
				return nil // another name of a hard-linked file
			}
			seen[ino] = true
		}
		s.Inodes++
		switch {
		case st.Mode().IsRegular():
			s.Bytes += roundUp(st.Size(), 4096)
		case st.IsDir():
			s.Bytes += 4096
		case st.Mode()&fs.ModeSymlink != 0 && st.Size() >= 60:
			s.Bytes += 4096
		}
		return nil
	})
	return s, err
}

// ext4Geometry is the image file's size and inode count for a tree: room
// for the data and its metadata plus a margin (the file is sparse; each VM
// disk grows the file system to the VM's storage size anyway).
func ext4Geometry(s treeSize) (size, inodes int64) {
	inodes = s.Inodes + max(s.Inodes/4, 8192)
	size = s.Bytes + s.Bytes/5 + inodes*256 + 96<<20
	return roundUp(size, 4<<20), inodes
}

func roundUp(n, to int64) int64 { return (n + to - 1) / to * to }

// buildTreeExt4 makes out, an ext4 file, from a flattened tree, then sets in
// it what the staging could not hold: owners and modes (without root),
// device nodes and FIFOs, and extended attributes the kernel refused.
func buildTreeExt4(ctx context.Context, t *unpack.Tree, out, digest string) error {
	size, err := measureTree(t.Dir())
	if err != nil {
		return err
	}
	bytes, inodes := ext4Geometry(size)
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	err = f.Truncate(bytes)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	mkfs, err := lookTool("mkfs.ext4", "e2fsprogs")
	if err != nil {
		return err
	}
	args := append([]string{"-N", strconv.FormatInt(inodes, 10)}, mkfsArgs(t.Dir(), out, digest)...)
	if b, err := exec.CommandContext(ctx, mkfs, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("mkfs.ext4: %w: %s", err, strings.TrimSpace(string(b)))
	}
	staged, err := stagedMeta(t.Dir())
	if err != nil {
		return err
	}
	xdir, err := os.MkdirTemp(filepath.Dir(out), ".xattr-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(xdir)
	cmds, err := fixCommands(staged, t.Want(), t.Specials(), t.Xattrs(), xdir)
	if err != nil {
		return err
	}
	return debugfsWrite(ctx, out, cmds)
}

// stagedMeta reads the owner and mode of every path of a staged tree,
// keyed like unpack.Tree.Want ("" is the root).
func stagedMeta(dir string) (map[string]unpack.Meta, error) {
	out := map[string]unpack.Meta{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		st, err := d.Info()
		if err != nil {
			return err
		}
		uid, gid, err := fileOwner(st)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			rel = ""
		}
		out[filepath.ToSlash(rel)] = unpack.Meta{UID: uid, GID: gid, Mode: st.Mode()}
		return nil
	})
	return out, err
}

// fixCommands plans the debugfs commands that give the image what the
// layers asked for: owner and mode of each staged path whose staged copy
// differs, the device nodes and FIFOs (replacing their placeholders), and
// extended attributes (their values written to files under xdir). Paths in
// want that are no longer staged (removed by a later layer) are skipped.
func fixCommands(staged, want map[string]unpack.Meta, specials []unpack.Special, xattrs []unpack.Xattr, xdir string) ([]string, error) {
	var cmds []string
	isSpecial := map[string]bool{}
	for _, s := range specials {
		isSpecial[s.Path] = true
	}
	paths := make([]string, 0, len(want))
	for p := range want {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		got, ok := staged[p]
		if !ok || isSpecial[p] {
			continue
		}
		w := want[p]
		if got.Mode.Type() != w.Mode.Type() {
			continue // replaced by another kind of entry since; its own want applies
		}
		q, err := debugfsPath(p)
		if err != nil {
			return nil, err
		}
		if got.UID != w.UID {
			cmds = append(cmds, fmt.Sprintf("set_inode_field %s uid %d", q, w.UID))
		}
		if got.GID != w.GID {
			cmds = append(cmds, fmt.Sprintf("set_inode_field %s gid %d", q, w.GID))
		}
		if w.Mode&fs.ModeSymlink == 0 && got.Mode != w.Mode {
			m, err := unixMode(w.Mode)
			if err != nil {
				return nil, err
			}
			cmds = append(cmds, fmt.Sprintf("set_inode_field %s mode 0%o", q, m))
		}
	}
	for _, s := range specials {
		q, err := debugfsPath(s.Path)
		if err != nil {
			return nil, err
		}
		dir, base := path.Split(s.Path)
		qdir, _ := debugfsPath(strings.TrimSuffix(dir, "/"))
		qbase, err := debugfsName(base)
		if err != nil {
			return nil, err
		}
		node := "p"
		switch {
		case s.Mode&fs.ModeCharDevice != 0:
			node = fmt.Sprintf("c %d %d", s.Major, s.Minor)
		case s.Mode&fs.ModeDevice != 0:
			node = fmt.Sprintf("b %d %d", s.Major, s.Minor)
		}
		m, err := unixMode(s.Mode)
		if err != nil {
			return nil, err
		}
		cmds = append(cmds,
			"rm "+q,
			"cd "+qdir,
			"mknod "+qbase+" "+node,
			"cd /",
			fmt.Sprintf("set_inode_field %s mode 0%o", q, m),
			fmt.Sprintf("set_inode_field %s uid %d", q, s.UID),
			fmt.Sprintf("set_inode_field %s gid %d", q, s.GID),
		)
	}
	for i, x := range xattrs {
		q, err := debugfsPath(x.Path)
		if err != nil {
			return nil, err
		}
		name, err := debugfsName(x.Name)
		if err != nil {
			return nil, err
		}
		vf := filepath.Join(xdir, strconv.Itoa(i))
		if err := os.WriteFile(vf, x.Value, 0o600); err != nil {
			return nil, err
		}
		qf, err := debugfsName(vf)
		if err != nil {
			return nil, err
		}
		cmds = append(cmds, fmt.Sprintf("ea_set -f %s %s %s", qf, q, name))
	}
	return cmds, nil
}

// debugfsPath quotes a tree path ("" is the root) as an absolute debugfs
// argument.
func debugfsPath(p string) (string, error) {
	return debugfsName("/" + p)
}

// debugfsName quotes one debugfs argument: debugfs splits on blanks
// outside double quotes, and "" inside quotes is one quote. A newline
// cannot be quoted (it ends the command), so such a name is refused.
func debugfsName(s string) (string, error) {
	if strings.ContainsAny(s, "\n\r") {
		return "", fmt.Errorf("%w: file name %q has a line break, which the image builder cannot address", unpack.ErrBadLayer, s)
	}
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`, nil
}

// run runs a tool found with lookTool; the error carries its output.
func run(ctx context.Context, tool, pkg string, args ...string) error {
	p, err := lookTool(tool, pkg)
	if err != nil {
		return err
	}
	if out, err := exec.CommandContext(ctx, p, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", tool, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
