// Package unpack flattens the layers of an OCI image, in order, into a
// staging directory that mkfs.ext4 -d turns into a root filesystem.
//
// Layers are applied as an overlay would show them: a later entry replaces
// whatever an earlier layer had at its path (a directory replaces a file,
// a file replaces a directory), ".wh.NAME" removes NAME from the layers
// below, and ".wh..wh..opq" hides everything the layers below had in its
// directory while keeping what the same layer adds there.
//
// Nothing is ever written outside the staging directory, whatever a layer
// holds:
//
//   - A name with a ".." component is refused (the layer is bad); a leading
//     "/" is dropped, so absolute names land inside the tree.
//   - Every path is resolved inside the tree, component by component, with
//     the image's own symlinks interpreted as the guest would see them: an
//     absolute target starts again at the tree's root, ".." stops at it.
//     So a symlink planted by one layer and written through by a later
//     one ("etc -> /etc", then "etc/passwd") lands inside the tree. The
//     resolved path has no symlink left in it, and every operation goes
//     through an os.Root on the tree as well, which refuses an escape.
//   - An entry never follows the thing already at its own path: an old
//     file, link or directory there is removed first.
//   - A hard link must name a file already in the tree (resolved the same
//     way).
//   - Device nodes and FIFOs are never created on the host. Each is staged
//     as an empty placeholder file and listed in Tree.Specials, so the
//     file-system builder can make the real node inside the ext4 image
//     (where it is just an inode the guest's kernel interprets).
//
// Owners: as root the staged files get their real owners (and extended
// attributes). Without root they are owned by the caller, made readable to
// it, and Tree.Want records what each path should have, for the builder to
// set in the image.
package unpack

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Whiteout markers, from the OCI image spec.
const (
	whiteoutPrefix = ".wh."
	opaqueMarker   = ".wh..wh..opq"
	// maxLinks bounds symlink resolution, as the kernel's ELOOP does.
	maxLinks = 40
)

// ErrBadLayer wraps every refusal of a layer's content.
var ErrBadLayer = errors.New("bad layer")

// Meta is what the image says a path should have.
type Meta struct {
	UID, GID int
	// Mode holds the type bits and permissions, with setuid, setgid and
	// sticky, as fs.FileMode.
	Mode fs.FileMode
}

// Special is a device node or FIFO, staged as an empty placeholder file.
type Special struct {
	Path         string // slash-separated, relative to the tree
	Mode         fs.FileMode
	Major, Minor uint32
	UID, GID     int
}

// Xattr is an extended attribute the tree could not set itself (without
// root, security.* and trusted.* need privileges).
type Xattr struct {
	Path, Name string
	Value      []byte
}

// Stats count what the layers put in the tree.
type Stats struct {
	Entries, Files, Dirs, Symlinks, Hardlinks, Specials, Whiteouts, Skipped int
	Bytes                                                                   int64
}

// Options configure a Tree.
type Options struct {
	// Privileged chowns staged files and sets every extended attribute;
	// it needs root. Without it, Want and Xattrs carry what must be set.
	Privileged bool
}

// Tree is a staging directory being built from layers. It is not safe for
// concurrent use.
type Tree struct {
	dir  string
	root *os.Root
	opt  Options

	want     map[string]Meta
	specials map[string]Special
	xattrs   []Xattr
	dirTimes map[string]time.Time
	// seen holds the paths the current layer wrote, and their parents.
	seen  map[string]bool
	stats Stats
}

// New returns a Tree staging into dir, which must exist and be empty.
func New(dir string, opt Options) (*Tree, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	return &Tree{
		dir: dir, root: root, opt: opt,
		want: map[string]Meta{}, specials: map[string]Special{}, dirTimes: map[string]time.Time{},
	}, nil
}

// Close releases the tree's handle on its directory.
func (t *Tree) Close() error { return t.root.Close() }

// Dir is the staging directory.
func (t *Tree) Dir() string { return t.dir }

// Stats are the totals so far.
func (t *Tree) Stats() Stats { return t.stats }

// Want returns what each staged path should have, keyed by its
// slash-separated path relative to the tree ("" is the root). Paths since
// removed may still be listed; callers check the tree.
func (t *Tree) Want() map[string]Meta { return t.want }

// Specials are the device nodes and FIFOs still present as placeholders
// (no later layer removed or replaced them), sorted by path.
func (t *Tree) Specials() []Special {
	var out []Special
	for _, s := range t.specials {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

// Xattrs are the extended attributes left for the builder to set, on
// paths still present.
func (t *Tree) Xattrs() []Xattr {
	var out []Xattr
	for _, x := range t.xattrs {
		if _, err := t.root.Lstat(x.Path); err == nil {
			out = append(out, x)
		}
	}
	return out
}

// Finish sets the modification times of directories, which the entries
// written into them changed.
func (t *Tree) Finish() error {
	for p, mt := range t.dirTimes {
		name := rootName(p)
		if st, err := t.root.Lstat(name); err != nil || !st.IsDir() {
			continue
		}
		if err := t.root.Chtimes(name, mt, mt); err != nil {
			return err
		}
	}
	return nil
}

// Apply applies one uncompressed layer tar.
func (t *Tree) Apply(r io.Reader) error {
	t.seen = map[string]bool{"": true}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read layer: %w", err)
		}
		if err := t.entry(h, tr); err != nil {
			return fmt.Errorf("%s: %w", h.Name, err)
		}
	}
}

// entry applies one tar entry.
func (t *Tree) entry(h *tar.Header, r io.Reader) error {
	t.stats.Entries++
	name, err := cleanName(h.Name)
	if err != nil {
		return err
	}
	dir, base := path.Split(name)
	dir = strings.TrimSuffix(dir, "/")
	switch {
	case base == opaqueMarker:
		t.stats.Whiteouts++
		return t.opaque(dir)
	case strings.HasPrefix(base, whiteoutPrefix+whiteoutPrefix):
		t.stats.Skipped++ // other AUFS metadata (.wh..wh.plnk, ...)
		return nil
	case strings.HasPrefix(base, whiteoutPrefix):
		t.stats.Whiteouts++
		return t.whiteout(dir, strings.TrimPrefix(base, whiteoutPrefix))
	}
	if name == "" { // "./": the root directory's own metadata
		if h.Typeflag == tar.TypeDir {
			return t.setMeta("", h, fs.ModeDir)
		}
		return fmt.Errorf("%w: the root is not a directory", ErrBadLayer)
	}
	parent, err := t.resolve(dir, true, true)
	if err != nil {
		return err
	}
	p := join(parent, base)
	t.markSeen(p)
	switch h.Typeflag {
	case tar.TypeDir:
		return t.mkdir(p, h)
	case tar.TypeReg, tar.TypeRegA, tar.TypeGNUSparse:
		return t.file(p, h, r)
	case tar.TypeSymlink:
		return t.symlink(p, h)
	case tar.TypeLink:
		return t.hardlink(p, h)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		return t.special(p, h)
	default:
		t.stats.Skipped++
		return nil
	}
}

// cleanName turns a tar name into a clean path relative to the tree ("" is
// the root). ".." anywhere is refused; a leading "/" is dropped.
func cleanName(name string) (string, error) {
	if strings.ContainsRune(name, 0) {
		return "", fmt.Errorf("%w: NUL in name", ErrBadLayer)
	}
	for _, c := range strings.Split(name, "/") {
		if c == ".." {
			return "", fmt.Errorf("%w: %q has a .. component", ErrBadLayer, name)
		}
	}
	p := strings.TrimPrefix(path.Clean("/"+name), "/")
	return p, nil
}

// resolve returns the real path of p inside the tree: symlinks in it are
// followed as the guest would follow them (the last component only when
// followLast), so the result names no symlink except perhaps its last
// component. Missing directories on the way are created when create is
// set; otherwise a missing component is fs.ErrNotExist.
func (t *Tree) resolve(p string, followLast, create bool) (string, error) {
	todo := splitPath(p)
	cur := ""
	links := 0
	for len(todo) > 0 {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			cur = path.Dir(cur)
			if cur == "." {
				cur = ""
			}
			continue
		}
		next := join(cur, c)
		st, err := t.root.Lstat(rootName(next))
		switch {
		case errors.Is(err, fs.ErrNotExist):
			if !create {
				return "", err
			}
			if len(todo) == 0 && !followLast {
				return next, nil // the entry itself, about to be made
			}
			if err := t.root.Mkdir(rootName(next), 0o755); err != nil {
				return "", err
			}
			t.want[next] = Meta{Mode: fs.ModeDir | 0o755}
			cur = next
		case err != nil:
			return "", err
		case st.Mode()&fs.ModeSymlink != 0 && (len(todo) > 0 || followLast):
			links++
			if links > maxLinks {
				return "", fmt.Errorf("%w: too many levels of symbolic links at %q", ErrBadLayer, next)
			}
			target, err := t.root.Readlink(rootName(next))
			if err != nil {
				return "", err
			}
			if strings.HasPrefix(target, "/") {
				cur = ""
			}
			todo = append(splitPath(target), todo...)
		case len(todo) > 0 && !st.IsDir():
			return "", fmt.Errorf("%w: %q is not a directory", ErrBadLayer, next)
		default:
			cur = next
		}
	}
	return cur, nil
}

// markSeen records that the current layer wrote p, and so its parents.
func (t *Tree) markSeen(p string) {
	for ; p != "" && p != "."; p = path.Dir(p) {
		t.seen[p] = true
	}
}

// whiteout removes name from dir, unless the current layer itself wrote it.
func (t *Tree) whiteout(dir, name string) error {
	if name == "" || name == "." {
		return fmt.Errorf("%w: empty whiteout", ErrBadLayer)
	}
	parent, err := t.resolve(dir, true, false)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // nothing below to hide
	}
	if err != nil {
		return err
	}
	p := join(parent, name)
	if t.seen[p] {
		return nil
	}
	return t.remove(p)
}

// opaque removes everything in dir that the current layer did not write.
func (t *Tree) opaque(dir string) error {
	d, err := t.resolve(dir, true, true)
	if err != nil {
		return err
	}
	t.markSeen(d)
	return t.prune(d)
}

func (t *Tree) prune(d string) error {
	entries, err := fs.ReadDir(t.root.FS(), rootName(d))
	if err != nil {
		return err
	}
	for _, e := range entries {
		p := join(d, e.Name())
		switch {
		case !t.seen[p]:
			if err := t.remove(p); err != nil {
				return err
			}
		case e.IsDir():
			if err := t.prune(p); err != nil {
				return err
			}
		}
	}
	return nil
}

// remove deletes p and everything under it, never following a symlink.
func (t *Tree) remove(p string) error {
	if p == "" {
		return fmt.Errorf("%w: cannot remove the root", ErrBadLayer)
	}
	if err := t.root.RemoveAll(rootName(p)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	for q := range t.specials {
		if q == p || strings.HasPrefix(q, p+"/") {
			delete(t.specials, q)
		}
	}
	return nil
}

// clear removes whatever is at p unless it is a directory and keepDir is
// set.
func (t *Tree) clear(p string, keepDir bool) error {
	st, err := t.root.Lstat(rootName(p))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if keepDir && st.IsDir() {
		return nil
	}
	return t.remove(p)
}

func (t *Tree) mkdir(p string, h *tar.Header) error {
	if err := t.clear(p, true); err != nil {
		return err
	}
	if err := t.root.Mkdir(rootName(p), 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	t.stats.Dirs++
	return t.setMeta(p, h, fs.ModeDir)
}

func (t *Tree) file(p string, h *tar.Header, r io.Reader) error {
	if err := t.clear(p, false); err != nil {
		return err
	}
	f, err := t.root.OpenFile(rootName(p), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	n, err := io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	t.stats.Files++
	t.stats.Bytes += n
	return t.setMeta(p, h, 0)
}

func (t *Tree) symlink(p string, h *tar.Header) error {
	if h.Linkname == "" || strings.ContainsRune(h.Linkname, 0) {
		return fmt.Errorf("%w: bad symlink target %q", ErrBadLayer, h.Linkname)
	}
	if err := t.clear(p, false); err != nil {
		return err
	}
	// The target is stored as it is: it means something only inside the
	// guest, and resolve interprets it inside the tree.
	if err := t.root.Symlink(h.Linkname, rootName(p)); err != nil {
		return err
	}
	t.stats.Symlinks++
	return t.setMeta(p, h, fs.ModeSymlink)
}

func (t *Tree) hardlink(p string, h *tar.Header) error {
	name, err := cleanName(h.Linkname)
	if err != nil || name == "" {
		return fmt.Errorf("%w: bad hard link target %q", ErrBadLayer, h.Linkname)
	}
	dir, base := path.Split(name)
	parent, err := t.resolve(strings.TrimSuffix(dir, "/"), true, false)
	if err != nil {
		return fmt.Errorf("hard link target %q: %w", h.Linkname, err)
	}
	target := join(parent, base)
	if target == p {
		return nil // a link to itself: nothing to do
	}
	st, err := t.root.Lstat(rootName(target))
	if err != nil {
		return fmt.Errorf("hard link target %q: %w", h.Linkname, err)
	}
	if st.IsDir() {
		return fmt.Errorf("%w: hard link to directory %q", ErrBadLayer, h.Linkname)
	}
	if err := t.clear(p, false); err != nil {
		return err
	}
	if err := t.root.Link(rootName(target), rootName(p)); err != nil {
		return err
	}
	t.stats.Hardlinks++
	if m, ok := t.want[target]; ok {
		t.want[p] = m
	}
	if s, ok := t.specials[target]; ok {
		s.Path = p
		t.specials[p] = s
	}
	return nil
}

// special stages a device node or FIFO as an empty placeholder file.
func (t *Tree) special(p string, h *tar.Header) error {
	if err := t.clear(p, false); err != nil {
		return err
	}
	if err := t.root.WriteFile(rootName(p), nil, 0o600); err != nil {
		return err
	}
	mode := fs.FileMode(h.Mode).Perm() | specialBits(h.Mode)
	switch h.Typeflag {
	case tar.TypeChar:
		mode |= fs.ModeDevice | fs.ModeCharDevice
	case tar.TypeBlock:
		mode |= fs.ModeDevice
	case tar.TypeFifo:
		mode |= fs.ModeNamedPipe
	}
	t.specials[p] = Special{
		Path: p, Mode: mode, Major: uint32(h.Devmajor), Minor: uint32(h.Devminor),
		UID: h.Uid, GID: h.Gid,
	}
	t.stats.Specials++
	return nil
}

// setMeta gives the staged p the header's permissions, times, owner and
// extended attributes, and records what the image wants for it.
func (t *Tree) setMeta(p string, h *tar.Header, typ fs.FileMode) error {
	name := rootName(p)
	perm := fs.FileMode(h.Mode).Perm() | specialBits(h.Mode)
	t.want[p] = Meta{UID: h.Uid, GID: h.Gid, Mode: typ | perm}
	if typ == fs.ModeSymlink {
		if t.opt.Privileged {
			return t.root.Lchown(name, h.Uid, h.Gid)
		}
		return nil
	}
	if t.opt.Privileged {
		if err := t.root.Lchown(name, h.Uid, h.Gid); err != nil {
			return err
		}
	} else {
		// The builder must be able to read what it stages.
		perm |= 0o600
		if typ == fs.ModeDir {
			perm |= 0o700
		}
	}
	// After chown, which clears setuid and setgid.
	if err := t.root.Chmod(name, perm); err != nil {
		return err
	}
	if err := t.setXattrs(p, h); err != nil {
		return err
	}
	mt := h.ModTime
	if typ == fs.ModeDir {
		t.dirTimes[p] = mt
		return nil
	}
	return t.root.Chtimes(name, mt, mt)
}

// setXattrs applies the entry's extended attributes (PAX SCHILY.xattr.*)
// to the staged file through a descriptor, or leaves them to the builder
// when the kernel refuses.
func (t *Tree) setXattrs(p string, h *tar.Header) error {
	var names []string
	for k := range h.PAXRecords {
		if strings.HasPrefix(k, "SCHILY.xattr.") {
			names = append(names, k)
		}
	}
	if len(names) == 0 {
		return nil
	}
	sort.Strings(names)
	f, err := t.root.Open(rootName(p))
	if err != nil {
		return err
	}
	defer f.Close()
	for _, k := range names {
		attr, val := strings.TrimPrefix(k, "SCHILY.xattr."), []byte(h.PAXRecords[k])
		err := unix.Fsetxattr(int(f.Fd()), attr, val, 0)
		switch {
		case err == nil:
		case errors.Is(err, unix.EPERM), errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.EACCES):
			t.xattrs = append(t.xattrs, Xattr{Path: p, Name: attr, Value: val})
		default:
			return fmt.Errorf("set xattr %s: %w", attr, err)
		}
	}
	return nil
}

// specialBits turns tar's setuid, setgid and sticky bits into FileMode's.
func specialBits(mode int64) fs.FileMode {
	var m fs.FileMode
	if mode&04000 != 0 {
		m |= fs.ModeSetuid
	}
	if mode&02000 != 0 {
		m |= fs.ModeSetgid
	}
	if mode&01000 != 0 {
		m |= fs.ModeSticky
	}
	return m
}

func splitPath(p string) []string {
	return strings.Split(p, "/")
}

func join(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

// rootName is p as os.Root wants it: "." for the root.
func rootName(p string) string {
	if p == "" {
		return "."
	}
	return filepath.FromSlash(p)
}
