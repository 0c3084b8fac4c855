package guest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/openslicer/openslicer/api"
)

// maxManifestSize bounds the manifest.json finalise reads.
const maxManifestSize = 16 << 20

// RunUpload runs "slicer-agent upload …", the guest half of the SDK's
// chunked copies, with the arguments after "upload", and returns the exit
// code:
//
//	upload check                                      prints chunked-copy-v2
//	upload finalise --manifest P [--uid U] [--gid G]  verifies and assembles
//	upload abort --manifest P [--uid U] [--gid G]     removes the session
//
// P is the session's manifest.json, in a directory named
// .slicer-upload-<hex>; "~" in P is the home of the user U. Finalise
// checks every chunk's size and SHA-256, then writes them as one upload
// with the same rules as POST /v1/cp (cp-v1 destination resolution when
// the manifest asks for it, the same tar extractor, owner U:G, which
// default to the manifest's) and removes the session directory. A failed
// finalise leaves the session for abort.
func RunUpload(ctx context.Context, log *slog.Logger, args []string, stdout, stderr io.Writer) int {
	return NewServer(log).runUpload(ctx, args, stdout, stderr)
}

// runUpload is RunUpload over a Server, which supplies the image's users.
func (s *Server) runUpload(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		uploadUsage(stderr)
		return 2
	}
	cmd := args[0]
	switch cmd {
	case "check":
		fmt.Fprintln(stdout, chunkedCopyVersion)
		return 0
	case "finalise", "finalize", "abort":
	case "help", "-h", "--help":
		uploadUsage(stdout)
		return 0
	default:
		fmt.Fprintf(stderr, "slicer-agent upload: unknown command %q\n", cmd)
		uploadUsage(stderr)
		return 2
	}
	f, err := parseSessionFlags(cmd, args[1:], stderr)
	if err != nil {
		fmt.Fprintf(stderr, "slicer-agent upload %s: %v\n", cmd, err)
		return 2
	}
	if cmd == "abort" {
		err = s.abortUpload(f)
	} else {
		err = s.finaliseUpload(ctx, f)
	}
	if err != nil {
		fmt.Fprintf(stderr, "slicer-agent upload %s: %v\n", cmd, err)
		return 1
	}
	return 0
}

func uploadUsage(w io.Writer) {
	fmt.Fprint(w, `usage:
  slicer-agent upload check
  slicer-agent upload finalise --manifest PATH [--uid UID] [--gid GID]
  slicer-agent upload abort --manifest PATH [--uid UID] [--gid GID]
`)
}

// sessionFlags are the flags of finalise and abort.
type sessionFlags struct {
	manifest string
	uid, gid *uint32 // nil: the manifest's
}

// parseSessionFlags reads the flags of finalise or abort.
func parseSessionFlags(cmd string, args []string, stderr io.Writer) (sessionFlags, error) {
	set := flag.NewFlagSet("upload "+cmd, flag.ContinueOnError)
	set.SetOutput(stderr)
	manifest := set.String("manifest", "", "the session's manifest.json")
	uid := set.String("uid", "", "owner of what is written (default: the manifest's)")
	gid := set.String("gid", "", "group of what is written (default: the manifest's)")
	if err := set.Parse(args); err != nil {
		return sessionFlags{}, err
	}
	if set.NArg() > 0 {
		return sessionFlags{}, fmt.Errorf("unexpected argument %q", set.Arg(0))
	}
	if *manifest == "" {
		return sessionFlags{}, errors.New("--manifest is required")
	}
	f := sessionFlags{manifest: *manifest}
	var err error
	if f.uid, err = parseID("--uid", *uid); err != nil {
		return sessionFlags{}, err
	}
	f.gid, err = parseID("--gid", *gid)
	return f, err
}

// sessionPaths resolves the manifest path of f and its session directory,
// which must be a real directory when it exists.
func (s *Server) sessionPaths(f sessionFlags) (manifest, session string, err error) {
	manifest, err = guestPath("--manifest", f.manifest, s.user(f.uid, f.gid).Home)
	if err != nil {
		return "", "", err
	}
	if session, err = sessionDir(manifest); err != nil {
		return "", "", err
	}
	fi, err := os.Lstat(session)
	if err == nil && !fi.IsDir() {
		return "", "", fmt.Errorf("%w: session %q is not a directory", api.ErrInvalid, session)
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", "", fsError("stat", session, err)
	}
	return manifest, session, nil
}

// abortUpload removes a session directory and what is in it; one already
// gone is fine.
func (s *Server) abortUpload(f sessionFlags) error {
	_, session, err := s.sessionPaths(f)
	if err != nil {
		return err
	}
	if err := os.RemoveAll(session); err != nil {
		return fsError("remove", session, err)
	}
	return nil
}

// finaliseUpload verifies a session's chunks, writes them as one upload,
// and removes the session.
func (s *Server) finaliseUpload(ctx context.Context, f sessionFlags) error {
	mpath, session, err := s.sessionPaths(f)
	if err != nil {
		return err
	}
	m, err := readManifest(mpath)
	if err != nil {
		return err
	}
	u, err := m.upload(f.uid, f.gid)
	if err != nil {
		return err
	}
	buf := make([]byte, copyBufSize)
	for _, c := range m.Chunks {
		if err := verifyChunk(ctx, chunkPath(session, c.Index), c, buf); err != nil {
			return err
		}
	}
	chunks := &chunkReader{session: session, chunks: m.Chunks}
	defer chunks.Close()
	res, err := s.receive(ctx, u, chunks)
	if err != nil {
		return err
	}
	s.log.Debug("chunked copy finalised", "path", res.Path, "bytes", res.Bytes, "chunks", len(m.Chunks))
	if err := os.RemoveAll(session); err != nil {
		return fsError("remove", session, err)
	}
	return nil
}

// readManifest reads and checks a session's manifest.json.
func readManifest(p string) (copyManifest, error) {
	f, err := os.Open(p)
	if err != nil {
		return copyManifest{}, fsError("open manifest", p, err)
	}
	defer f.Close()
	var m copyManifest
	if err := json.NewDecoder(io.LimitReader(f, maxManifestSize)).Decode(&m); err != nil {
		return copyManifest{}, fmt.Errorf("%w: manifest %q: %v", api.ErrInvalid, p, err)
	}
	if err := m.check(); err != nil {
		return copyManifest{}, fmt.Errorf("manifest %q: %w", p, err)
	}
	return m, nil
}

// openChunk opens a chunk file, which must be a regular file (not a link).
func openChunk(p string) (*os.File, error) {
	f, err := os.OpenFile(p, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, fsError("open chunk", p, err)
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%w: chunk %q is not a regular file", api.ErrInvalid, p)
	}
	return f, nil
}

// verifyChunk checks a chunk file's size and SHA-256 against the
// manifest.
func verifyChunk(ctx context.Context, p string, c copyChunk, buf []byte) error {
	f, err := openChunk(p)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	n, rerr, _ := copyBuffer(h, ctxReader{ctx, f}, buf)
	switch {
	case rerr != nil:
		return fsError("read chunk", p, rerr)
	case n != c.Size:
		return fmt.Errorf("%w: chunk %q is %d bytes, the manifest says %d", api.ErrInvalid, p, n, c.Size)
	case !strings.EqualFold(hex.EncodeToString(h.Sum(nil)), c.SHA256):
		return fmt.Errorf("%w: chunk %q does not match its SHA-256 in the manifest", api.ErrInvalid, p)
	}
	return nil
}

// chunkReader reads a session's chunks one after the other, each to its
// size in the manifest (a chunk that became shorter is an error), opening
// one at a time.
type chunkReader struct {
	session string
	chunks  []copyChunk
	next    int      // index in chunks of the next chunk to open
	cur     *os.File // the chunk being read, or nil
	left    int64    // bytes of cur still to read
}

func (c *chunkReader) Read(p []byte) (int, error) {
	for c.cur == nil || c.left == 0 {
		c.Close()
		if c.next == len(c.chunks) {
			return 0, io.EOF
		}
		ch := c.chunks[c.next]
		f, err := openChunk(chunkPath(c.session, ch.Index))
		if err != nil {
			return 0, err
		}
		c.cur, c.left, c.next = f, ch.Size, c.next+1
	}
	n, err := c.cur.Read(p[:min(int64(len(p)), c.left)])
	c.left -= int64(n)
	if errors.Is(err, io.EOF) && c.left > 0 {
		err = fmt.Errorf("chunk %q: %w", c.cur.Name(), io.ErrUnexpectedEOF)
	} else if errors.Is(err, io.EOF) {
		err = nil
	}
	return n, err
}

// Close closes the chunk being read.
func (c *chunkReader) Close() error {
	if c.cur == nil {
		return nil
	}
	err := c.cur.Close()
	c.cur = nil
	return err
}
