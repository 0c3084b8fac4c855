package guest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/openslicer/openslicer/api"
)

// copyBufSize is the size of the buffer every copy moves bytes with; large
// buffers keep a copy's throughput up on the agent channel.
const copyBufSize = 512 << 10

// copyResult is the answer to an upload.
type copyResult struct {
	Path  string `json:"path"`  // the file written, or the directory extracted into
	Bytes int64  `json:"bytes"` // bytes of file content written
}

// receive does one upload as the user it is for (see actor.do): it
// resolves the destination, checks the free space, then writes body
// there. An upload lands whole or not at all: a failure leaves nothing of
// it behind, not even the parent directories it created.
func (s *Server) receive(ctx context.Context, u upload, body io.Reader) (copyResult, error) {
	act, err := s.actor(u.uid, u.gid)
	if err != nil {
		return copyResult{}, err
	}
	var res copyResult
	err = act.do(func() error {
		var err error
		res, err = s.receiveAs(ctx, u, act, ctxReader{ctx, body})
		return err
	})
	return res, err
}

// receiveAs is receive once the agent acts as act.
func (s *Server) receiveAs(ctx context.Context, u upload, act actor, body io.Reader) (copyResult, error) {
	dest, err := guestPath("path", u.rawPath, act.Home)
	if err != nil {
		return copyResult{}, err
	}
	st, err := statDest(dest)
	if err != nil {
		return copyResult{}, err
	}
	target, err := uploadTarget(u, dest, strings.HasSuffix(u.rawPath, "/"), st)
	if err != nil {
		return copyResult{}, err
	}
	if err := checkSpace(target, u.size); err != nil {
		return copyResult{}, err
	}
	if u.tar {
		return s.receiveTar(ctx, u, target, act.owner(), body)
	}
	return receiveFile(u, target, act.owner(), body)
}

// statDest describes the destination, following symbolic links.
func statDest(p string) (destState, error) {
	fi, err := os.Stat(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return destState{}, nil
	case err != nil:
		return destState{}, fsError("stat", p, err)
	}
	return destState{exists: true, isDir: fi.IsDir()}, nil
}

// checkSpace fails when need bytes do not fit in the file system that
// will hold target (found through its nearest existing ancestor).
func checkSpace(target string, need int64) error {
	if need <= 0 {
		return nil
	}
	dir := target
	for {
		if _, err := os.Stat(dir); err == nil || dir == "/" {
			break
		}
		dir = filepath.Dir(dir)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return fsError("statfs", dir, err)
	}
	return spaceError(need, st.Bavail*uint64(st.Bsize), dir)
}

// receiveFile writes a single uploaded file to target, creating its
// parent directories; if the write fails they are removed again and the
// directory that held them (or the temporary file) gets its times back. A
// target that is a symbolic link is written through, as cp(1) does.
func receiveFile(u upload, target string, own owner, body io.Reader) (res copyResult, err error) {
	holder := keepTimes(existingDir(filepath.Dir(target)))
	created, err := mkdirAllOwned(filepath.Dir(target), own)
	defer func() {
		if err != nil {
			removeCreated(created)
			holder.restore()
		}
	}()
	if err != nil {
		return copyResult{}, err
	}
	if real, err := filepath.EvalSymlinks(target); err == nil {
		target = real
	}
	dir, name := filepath.Split(target)
	root, err := os.OpenRoot(dir)
	if err != nil {
		return copyResult{}, fsError("open directory", dir, err)
	}
	defer root.Close()
	old, err := root.Lstat(name)
	if err == nil && old.IsDir() {
		return copyResult{}, fmt.Errorf("%w: %q is a directory", api.ErrInvalid, target)
	}
	meta := fileMeta{mode: fileMode(u.perm, modeOf(old), err == nil), owner: own}
	n, err := writeFile(root, name, body, meta, make([]byte, copyBufSize))
	if err != nil {
		return copyResult{}, err
	}
	return copyResult{Path: target, Bytes: n}, nil
}

// modeOf is fi's mode, or 0 for no file.
func modeOf(fi fs.FileInfo) fs.FileMode {
	if fi == nil {
		return 0
	}
	return fi.Mode()
}

// mkdirAllOwned makes dir and its missing parents, giving each directory
// it creates to own, and returns the directories it created, outermost
// first (also when it fails part way). Symbolic links on the way are
// followed: dir is a path the request named.
func mkdirAllOwned(dir string, own owner) ([]string, error) {
	fi, err := os.Stat(dir)
	switch {
	case err == nil && fi.IsDir():
		return nil, nil
	case err == nil:
		return nil, fmt.Errorf("%w: %q is not a directory", api.ErrInvalid, dir)
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fsError("stat", dir, err)
	}
	var created []string
	if parent := filepath.Dir(dir); parent != dir {
		if created, err = mkdirAllOwned(parent, own); err != nil {
			return created, err
		}
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		if errors.Is(err, fs.ErrExist) { // made meanwhile
			return created, nil
		}
		return created, fsError("create directory", dir, err)
	}
	created = append(created, dir)
	if own.chown {
		if err := os.Lchown(dir, own.uid, own.gid); err != nil {
			return created, fsError("chown", dir, err)
		}
	}
	return created, nil
}

// removeCreated removes the directories a failed upload created (as
// mkdirAllOwned lists them), innermost first. One that is not empty any
// more (someone else wrote there meanwhile) is left.
func removeCreated(dirs []string) {
	for _, d := range slices.Backward(dirs) {
		_ = os.Remove(d)
	}
}

// fileMeta is what a written file gets besides its bytes.
type fileMeta struct {
	mode  fs.FileMode
	mtime time.Time // zero: the time of writing
	owner owner
}

// writeFile writes src to name (relative to root) through a temporary
// file in the same directory, renamed over name once complete; on any
// error the temporary file is removed and name is untouched. A full disk
// is api.ErrInsufficientStorage; a failing src is api.ErrInvalid.
func writeFile(root *os.Root, name string, src io.Reader, m fileMeta, buf []byte) (int64, error) {
	tmp := path.Join(path.Dir(name), tempName())
	f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return 0, fsError("create", name, err)
	}
	n, err := fillFile(f, name, src, m, buf)
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fsError("write", name, cerr)
	}
	if err == nil && !m.mtime.IsZero() {
		if cerr := root.Chtimes(tmp, m.mtime, m.mtime); cerr != nil {
			err = fsError("set times of", name, cerr)
		}
	}
	if err == nil {
		if rerr := root.Rename(tmp, name); rerr != nil {
			err = fsError("rename into", name, rerr)
		}
	}
	if err != nil {
		_ = root.Remove(tmp)
		return 0, err
	}
	return n, nil
}

// fillFile copies src into f, the open temporary file for name, and
// gives it its mode and owner.
func fillFile(f *os.File, name string, src io.Reader, m fileMeta, buf []byte) (int64, error) {
	n, rerr, werr := copyBuffer(f, src, buf)
	switch {
	case werr != nil:
		return n, fsError("write", name, werr)
	case rerr != nil:
		return n, fmt.Errorf("%w: read the upload for %q: %v", api.ErrInvalid, name, rerr)
	}
	// Owner first: a chown clears the setuid and setgid bits.
	if m.owner.chown {
		if err := f.Chown(m.owner.uid, m.owner.gid); err != nil {
			return n, fsError("chown", name, err)
		}
	}
	if err := f.Chmod(m.mode); err != nil {
		return n, fsError("chmod", name, err)
	}
	return n, nil
}

// copyBuffer copies src to dst through buf until src ends, and says which
// side failed. It fills buf before each write, so a stream that arrives in
// small pieces is still written in large ones, and never hands the copy
// to ReaderFrom or WriterTo, whose own buffers are small.
func copyBuffer(dst io.Writer, src io.Reader, buf []byte) (n int64, readErr, writeErr error) {
	for {
		nr, rerr := fillBuf(src, buf)
		if nr > 0 {
			nw, werr := dst.Write(buf[:nr])
			n += int64(nw)
			if werr == nil && nw < nr {
				werr = io.ErrShortWrite
			}
			if werr != nil {
				return n, nil, werr
			}
		}
		if errors.Is(rerr, io.EOF) {
			return n, nil, nil
		}
		if rerr != nil {
			return n, rerr, nil
		}
	}
}

// fillBuf reads into buf until it is full or src fails or ends.
func fillBuf(src io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		nr, err := src.Read(buf[n:])
		n += nr
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// tempName returns a fresh hidden name for a file being written.
func tempName() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return ".slicer-cp-" + hex.EncodeToString(b)
}

// fsError wraps a file system error of a copy with its api class
// (fsClass), so the caller gets a status that says what went wrong; an
// existing file where the copy needs something else is a bad request.
func fsError(op, name string, err error) error {
	class := fsClass(err)
	if errors.Is(err, fs.ErrExist) {
		class = api.ErrInvalid
	}
	if class == nil {
		return fmt.Errorf("%s %q: %w", op, name, err)
	}
	return fmt.Errorf("%w: %s %q: %w", class, op, name, err)
}

// ctxReader is r that fails once ctx is done, so a long copy stops when
// its request ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
