package image

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/klauspost/compress/zstd"

	"github.com/openslicer/openslicer/internal/image/unpack"
	"github.com/openslicer/openslicer/internal/imageref"
)

// ociFormat changes whenever the same image would build a different base.
// 2: the guest layer (guestlayer.go) is in the base.
const ociFormat = 2

// Store is the cache of OCI images under Dir (<images>/oci):
//
//	<Dir>/
//	  .lock                      flock held while pulling, building or removing
//	  refs.json                  image name (as configured) → image ID and manifest digest
//	  blobs/sha256/<hex>         layer blobs as the registry serves them, by digest
//	  images/<id-hex>/           one built image per image ID (config digest);
//	                             appears by rename, complete
//	    rootfs.ext4              the read-only (0444) base every VM disk is a clone of
//	    config.json              the image's OCI config, as pulled
//	    image.json               what was built: digests, layers, exec defaults
//	    grow-<bytes>.qcow2       the base's file system grown to a disk size (clone.go)
//	    users/<hash>             one per VM disk backed by this image (clone.go)
//	  layouts/debian/            the OCI layout `slicer image build debian` writes
//	  .build-*, .archive-*       work in progress (removed when stale)
//
// An image is keyed by its config digest, so the same image from a
// registry, an OCI layout or a docker save tar is built once.
type Store struct {
	Dir string
	Log *slog.Logger
	// Progress, when set, is told how a pull goes.
	Progress func(Progress)
	// Keychain authenticates to registries; nil is the Docker config and
	// credential helpers (authn.DefaultKeychain).
	Keychain authn.Keychain
	// Transport carries registry requests; nil is remote.DefaultTransport.
	Transport http.RoundTripper
	// Unprivileged stages files without chown even as root, leaving owners
	// to debugfs (tests use it to cover the path non-root builds take).
	Unprivileged bool
}

// Progress is one step of a pull.
type Progress struct {
	Image string
	Step  string // "download", "unpack", "build", "done"
	Layer string // short digest, for download and unpack
	Index int    // 1-based layer number
	Count int    // layers in the image
	Done  int64  // bytes so far of this step
	Total int64  // bytes in all, 0 when unknown
}

// ExecDefaults are what an image's config says a process runs with.
type ExecDefaults struct {
	Env        []string `json:"env,omitempty"`
	WorkingDir string   `json:"working_dir,omitempty"`
	User       string   `json:"user,omitempty"`
	Entrypoint []string `json:"entrypoint,omitempty"`
	Cmd        []string `json:"cmd,omitempty"`
}

// OCIImage is a built image in the store.
type OCIImage struct {
	ID     string // config digest, "sha256:<hex>"
	Digest string // manifest digest it was last pulled by
	Dir    string
	RootFS string
	Config ExecDefaults
	Layers []string // layer digests, bottom first
	Built  time.Time
	Stats  unpack.Stats
}

// ociManifest is image.json.
type ociManifest struct {
	Format int          `json:"format"`
	ID     string       `json:"id"`
	Digest string       `json:"digest"`
	Layers []string     `json:"layers"`
	Config ExecDefaults `json:"config"`
	Built  time.Time    `json:"built"`
	Stats  unpack.Stats `json:"stats"`
}

// refEntry is one name in refs.json.
type refEntry struct {
	ID     string    `json:"id"`
	Digest string    `json:"digest"`
	Pulled time.Time `json:"pulled"`
}

// Pull makes the image src names available, pulling and building what the
// cache lacks, and records it under name (the image value as configured).
func (s *Store) Pull(ctx context.Context, name string, src imageref.Source) (*OCIImage, error) {
	unlock, err := s.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	return s.pullLocked(ctx, name, src)
}

// pullLocked is Pull with the cache lock held.
func (s *Store) pullLocked(ctx context.Context, name string, src imageref.Source) (*OCIImage, error) {
	img, cleanup, err := s.openSource(ctx, src)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	id, err := img.ConfigName()
	if err != nil {
		return nil, fmt.Errorf("%s: read config: %w", name, err)
	}
	digest, err := img.Digest()
	if err != nil {
		return nil, fmt.Errorf("%s: read manifest: %w", name, err)
	}
	dir := s.imageDir(id.String())
	got, err := loadOCI(dir)
	if errors.Is(err, errOldFormat) {
		err = s.dropOld(dir, err)
	}
	if errors.Is(err, fs.ErrNotExist) {
		start := time.Now()
		if err = s.build(ctx, name, img, dir); err == nil {
			got, err = loadOCI(dir)
		}
		if err == nil {
			s.logger().Info("image built", "image", name, "id", got.ID, "files", got.Stats.Files,
				"bytes", got.Stats.Bytes, "took", time.Since(start).Round(time.Millisecond))
		}
	}
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", name, err)
	}
	got.Digest = digest.String()
	if err := s.saveRef(name, refEntry{ID: got.ID, Digest: got.Digest, Pulled: time.Now().UTC().Truncate(time.Second)}); err != nil {
		return nil, err
	}
	s.report(Progress{Image: name, Step: "done"})
	return got, nil
}

// Lookup returns the image recorded under name without pulling; an
// unknown name is fs.ErrNotExist.
func (s *Store) Lookup(name string) (*OCIImage, error) {
	refs, err := s.readRefs()
	if err != nil {
		return nil, err
	}
	r, ok := refs[name]
	if !ok {
		return nil, fmt.Errorf("image %s is not in the cache: %w", name, fs.ErrNotExist)
	}
	img, err := loadOCI(s.imageDir(r.ID))
	if err != nil {
		return nil, err
	}
	img.Digest = r.Digest
	return img, nil
}

// build pulls the layers of img into the blob cache, flattens them and
// makes the ext4 base in a temporary directory, then renames it to dir.
func (s *Store) build(ctx context.Context, name string, img v1.Image, dir string) error {
	cfg, err := img.ConfigFile()
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	if cfg.OS != "" && cfg.OS != "linux" {
		return fmt.Errorf("image is for %s, not linux", cfg.OS)
	}
	if want := platform().Architecture; cfg.Architecture != "" && cfg.Architecture != want {
		return fmt.Errorf("image is for %s, this host runs %s guests", cfg.Architecture, want)
	}
	rawCfg, err := img.RawConfigFile()
	if err != nil {
		return err
	}
	layers, err := img.Layers()
	if err != nil {
		return fmt.Errorf("list layers: %w", err)
	}
	blobs := make([]string, len(layers))
	digests := make([]string, len(layers))
	diffIDs := make([]v1.Hash, len(layers))
	for i, l := range layers {
		if blobs[i], err = s.fetchLayer(ctx, name, l, i+1, len(layers)); err != nil {
			return err
		}
		d, _ := l.Digest()
		digests[i] = d.String()
		if diffIDs[i], err = l.DiffID(); err != nil {
			return err
		}
	}

	tmp, err := os.MkdirTemp(filepath.Dir(dir), ".build-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	stage, out := filepath.Join(tmp, "stage"), filepath.Join(tmp, "image")
	for _, d := range []string{stage, out} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return err
		}
	}
	tree, err := unpack.New(stage, unpack.Options{Privileged: os.Geteuid() == 0 && !s.Unprivileged})
	if err != nil {
		return err
	}
	defer tree.Close()
	for i, b := range blobs {
		s.report(Progress{Image: name, Step: "unpack", Layer: short(digests[i]), Index: i + 1, Count: len(blobs)})
		if err := applyBlob(ctx, tree, b, diffIDs[i]); err != nil {
			return fmt.Errorf("layer %d (%s): %w", i+1, digests[i], err)
		}
	}
	defaults := ExecDefaults{
		Env: cfg.Config.Env, WorkingDir: cfg.Config.WorkingDir, User: cfg.Config.User,
		Entrypoint: cfg.Config.Entrypoint, Cmd: cfg.Config.Cmd,
	}
	guest, user, err := guestLayer(stage, tree.Want(), defaults)
	if err != nil {
		return fmt.Errorf("guest layer: %w", err)
	}
	if err := tree.Apply(bytes.NewReader(guest)); err != nil {
		return fmt.Errorf("guest layer: %w", err)
	}
	if user != "" {
		s.logger().Info("image has no uid-1000 user: added the default user", "image", name, "user", user)
	}
	if err := tree.Finish(); err != nil {
		return err
	}
	s.report(Progress{Image: name, Step: "build", Total: tree.Stats().Bytes})
	id, _ := img.ConfigName()
	rootfs := filepath.Join(out, "rootfs.ext4")
	if err := buildTreeExt4(ctx, tree, rootfs, id.Hex); err != nil {
		return fmt.Errorf("root filesystem: %w", err)
	}
	if err := os.Chmod(rootfs, 0o444); err != nil {
		return err
	}
	m := ociManifest{
		Format: ociFormat, ID: id.String(), Layers: digests, Stats: tree.Stats(),
		Config: defaults, Built: time.Now().UTC().Truncate(time.Second),
	}
	if err := os.WriteFile(filepath.Join(out, "config.json"), rawCfg, 0o644); err != nil {
		return err
	}
	if err := writeJSON(filepath.Join(out, "image.json"), m); err != nil {
		return err
	}
	if err := os.RemoveAll(stage); err != nil {
		return err
	}
	if err := syncTree(out); err != nil {
		return err
	}
	if err := os.Rename(out, dir); err != nil {
		return fmt.Errorf("move image into place: %w", err)
	}
	return syncDir(filepath.Dir(dir))
}

// fetchLayer returns the cached blob of l, downloading it first if the
// cache lacks it. The download is checked against the layer's digest
// before it is renamed into place.
func (s *Store) fetchLayer(ctx context.Context, name string, l v1.Layer, index, count int) (string, error) {
	d, err := l.Digest()
	if err != nil {
		return "", err
	}
	path := s.blobPath(d)
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	size, _ := l.Size()
	rc, err := l.Compressed()
	if err != nil {
		return "", fmt.Errorf("layer %s: %w", d, err)
	}
	defer rc.Close()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return "", err
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-")
	if err != nil {
		return "", err
	}
	defer os.Remove(f.Name())
	h := sha256.New()
	p := Progress{Image: name, Step: "download", Layer: short(d.String()), Index: index, Count: count, Total: size}
	w := &progressWriter{ctx: ctx, report: s.report, p: p}
	_, err = io.Copy(io.MultiWriter(f, h, w), rc)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("download layer %s: %w", d, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); d.Algorithm != "sha256" || got != d.Hex {
		return "", fmt.Errorf("layer %s: content has digest sha256:%s", d, got)
	}
	w.flush()
	if err := os.Rename(f.Name(), path); err != nil {
		return "", err
	}
	return path, nil
}

// applyBlob decompresses a layer blob (gzip, zstd or plain tar, told
// apart by their magic numbers), applies it to the tree and checks the
// uncompressed stream against the image's diff ID.
func applyBlob(ctx context.Context, tree *unpack.Tree, blob string, diffID v1.Hash) error {
	f, err := os.Open(blob)
	if err != nil {
		return err
	}
	defer f.Close()
	var magic [4]byte
	n, _ := io.ReadFull(f, magic[:])
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	var r io.Reader = f
	switch {
	case n >= 2 && magic[0] == 0x1f && magic[1] == 0x8b:
		zr, err := gzip.NewReader(f)
		if err != nil {
			return err
		}
		defer zr.Close()
		r = zr
	case n == 4 && magic == [4]byte{0x28, 0xb5, 0x2f, 0xfd}:
		zr, err := zstd.NewReader(f)
		if err != nil {
			return err
		}
		defer zr.Close()
		r = zr
	}
	h := sha256.New()
	tee := io.TeeReader(&ctxReader{ctx: ctx, r: r}, h)
	if err := tree.Apply(tee); err != nil {
		return err
	}
	if _, err := io.Copy(io.Discard, tee); err != nil { // the tar's end padding
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); diffID.Algorithm != "sha256" || got != diffID.Hex {
		return fmt.Errorf("uncompressed layer has digest sha256:%s, the image says %s", got, diffID)
	}
	return nil
}

// errOldFormat is a built image of another format: it is rebuilt when no
// VM disk uses it. It is also fs.ErrNotExist: the image is not there in
// the form this version needs.
var errOldFormat = fmt.Errorf("base of another format: %w", fs.ErrNotExist)

// dropOld removes the image in dir, which loadOCI found in another format
// (err), so that it is built again; a VM disk that still uses it keeps it,
// and the error says so.
func (s *Store) dropOld(dir string, err error) error {
	users, uerr := DiskUsers(dir)
	if uerr != nil {
		return errors.Join(err, uerr)
	}
	if len(users) > 0 {
		return fmt.Errorf("%w; in use by %d VM disk(s) (%s): delete those VMs to rebuild it", err, len(users), strings.Join(users, ", "))
	}
	s.logger().Info("rebuilding an image built by another version", "dir", dir)
	if rerr := os.RemoveAll(dir); rerr != nil {
		return errors.Join(err, rerr)
	}
	return fs.ErrNotExist
}

// loadOCI reads a built image directory; a missing one is fs.ErrNotExist,
// one of another format errOldFormat.
func loadOCI(dir string) (*OCIImage, error) {
	data, err := os.ReadFile(filepath.Join(dir, "image.json"))
	if err != nil {
		return nil, err
	}
	var m ociManifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("read %s: %w", filepath.Join(dir, "image.json"), err)
	}
	if m.Format != ociFormat {
		return nil, fmt.Errorf("%s was built by another version (format %d): %w", dir, m.Format, errOldFormat)
	}
	img := &OCIImage{
		ID: m.ID, Digest: m.Digest, Dir: dir, RootFS: filepath.Join(dir, "rootfs.ext4"),
		Config: m.Config, Layers: m.Layers, Built: m.Built, Stats: m.Stats,
	}
	if _, err := os.Stat(img.RootFS); err != nil {
		return nil, fmt.Errorf("image %s is incomplete: %w", dir, err)
	}
	return img, nil
}

func (s *Store) lock(ctx context.Context) (func(), error) {
	for _, d := range []string{s.Dir, filepath.Join(s.Dir, "images"), filepath.Join(s.Dir, "blobs")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	unlock, err := lockDir(ctx, filepath.Join(s.Dir, ".lock"), func() {
		s.logger().Info("waiting for another process using the image cache", "dir", s.Dir)
	})
	if err != nil {
		return nil, fmt.Errorf("lock image cache %s: %w", s.Dir, err)
	}
	s.removeStale()
	return unlock, nil
}

// removeStale deletes work left by a process that died; the caller holds
// the lock.
func (s *Store) removeStale() {
	for _, glob := range []string{"images/.build-*", ".archive-*", "blobs/sha256/.tmp-*"} {
		stale, _ := filepath.Glob(filepath.Join(s.Dir, glob))
		for _, p := range stale {
			s.logger().Info("removing stale image work", "path", p)
			os.RemoveAll(p)
		}
	}
}

func (s *Store) imageDir(id string) string {
	return filepath.Join(s.Dir, "images", strings.TrimPrefix(id, "sha256:"))
}

func (s *Store) blobPath(d v1.Hash) string {
	return filepath.Join(s.Dir, "blobs", d.Algorithm, d.Hex)
}

func (s *Store) readRefs() (map[string]refEntry, error) {
	refs := map[string]refEntry{}
	data, err := os.ReadFile(filepath.Join(s.Dir, "refs.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return refs, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(data, &refs); err != nil {
		return nil, fmt.Errorf("read %s: %w", filepath.Join(s.Dir, "refs.json"), err)
	}
	return refs, nil
}

// saveRef records name → e; the caller holds the lock.
func (s *Store) saveRef(name string, e refEntry) error {
	refs, err := s.readRefs()
	if err != nil {
		return err
	}
	refs[name] = e
	return s.writeRefs(refs)
}

func (s *Store) writeRefs(refs map[string]refEntry) error {
	p := filepath.Join(s.Dir, "refs.json")
	if err := writeJSON(p+".tmp", refs); err != nil {
		return err
	}
	return os.Rename(p+".tmp", p)
}

func (s *Store) report(p Progress) {
	if s.Progress != nil {
		s.Progress(p)
	}
}

func (s *Store) logger() *slog.Logger {
	if s.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Log
}

func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}

// short is the first 12 hex digits of a digest.
func short(d string) string {
	d = strings.TrimPrefix(d, "sha256:")
	if len(d) > 12 {
		return d[:12]
	}
	return d
}

// progressWriter counts bytes written and reports them, at most every
// 100 ms.
type progressWriter struct {
	ctx    context.Context
	report func(Progress)
	p      Progress
	last   time.Time
}

func (w *progressWriter) Write(b []byte) (int, error) {
	if err := w.ctx.Err(); err != nil {
		return 0, err
	}
	w.p.Done += int64(len(b))
	if time.Since(w.last) >= 100*time.Millisecond {
		w.flush()
	}
	return len(b), nil
}

func (w *progressWriter) flush() {
	w.last = time.Now()
	w.report(w.p)
}

// ctxReader ends a read when ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r *ctxReader) Read(b []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(b)
}
