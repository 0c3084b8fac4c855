package image

import (
	"archive/tar"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/openslicer/openslicer/internal/imageref"
)

// refNameAnnotation names an image inside an OCI layout.
const refNameAnnotation = "org.opencontainers.image.ref.name"

// platform is the only platform images are pulled for: the host's.
func platform() v1.Platform {
	return v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
}

// openSource returns the image a source names, reading nothing but its
// manifest and config yet. cleanup removes what opening it unpacked (an
// oci-archive's layout); call it once the image has been read.
func (s *Store) openSource(ctx context.Context, src imageref.Source) (img v1.Image, cleanup func(), err error) {
	nop := func() {}
	switch src.Kind {
	case imageref.Registry:
		ref, err := src.Reference()
		if err != nil {
			return nil, nop, err
		}
		img, err := remote.Image(ref, s.remoteOptions(ctx, src)...)
		if err != nil {
			return nil, nop, fmt.Errorf("pull %s: %w", ref, err)
		}
		return img, nop, nil
	case imageref.OCILayout:
		img, err := layoutImage(src.Name, src.Ref)
		return img, nop, err
	case imageref.OCIArchive:
		dir, err := os.MkdirTemp(s.Dir, ".archive-")
		if err != nil {
			return nil, nop, err
		}
		cleanup := func() { os.RemoveAll(dir) }
		if err := extractLayoutArchive(src.Name, dir); err != nil {
			cleanup()
			return nil, nop, fmt.Errorf("oci-archive %s: %w", src.Name, err)
		}
		img, err := layoutImage(dir, src.Ref)
		if err != nil {
			cleanup()
			return nil, nop, fmt.Errorf("oci-archive %s: %w", src.Name, err)
		}
		return img, cleanup, nil
	case imageref.DockerArchive:
		var tag *name.Tag
		if src.Ref != "" {
			t, err := name.NewTag(src.Ref)
			if err != nil {
				return nil, nop, err
			}
			tag = &t
		}
		img, err := tarball.ImageFromPath(src.Name, tag)
		if err != nil {
			return nil, nop, fmt.Errorf("docker-archive %s: %w", src.Name, err)
		}
		return img, nop, nil
	}
	return nil, nop, fmt.Errorf("image %s is not an OCI image", src)
}

// remoteOptions authenticate with the Docker config and credential
// helpers (authn.DefaultKeychain unless the store has its own), pick the
// host's platform from an index, and with insecure_registry also accept a
// registry's unverified TLS certificate.
func (s *Store) remoteOptions(ctx context.Context, src imageref.Source) []remote.Option {
	kc := s.Keychain
	if kc == nil {
		kc = authn.DefaultKeychain
	}
	tr := s.Transport
	if tr == nil {
		tr = remote.DefaultTransport
	}
	if src.Insecure {
		if t, ok := tr.(*http.Transport); ok {
			t = t.Clone()
			t.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} // the user asked: insecure_registry
			tr = t
		}
	}
	return []remote.Option{
		remote.WithContext(ctx), remote.WithAuthFromKeychain(kc),
		remote.WithPlatform(platform()), remote.WithTransport(tr),
	}
}

// layoutImage finds one image in an OCI layout directory: the one whose
// ref.name annotation is ref, or the only one when ref is empty. An entry
// that is itself an index (a multi-platform image) yields the host's
// platform.
func layoutImage(dir, ref string) (v1.Image, error) {
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("oci layout %s: %w", dir, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("oci layout %s: %w", dir, err)
	}
	var picked []v1.Descriptor
	var names []string
	for _, d := range im.Manifests {
		n := d.Annotations[refNameAnnotation]
		names = append(names, n)
		if ref == "" || n == ref {
			picked = append(picked, d)
		}
	}
	switch {
	case len(picked) == 0:
		return nil, fmt.Errorf("oci layout %s has no image %q (it has %q)", dir, ref, names)
	case len(picked) > 1:
		return nil, fmt.Errorf("oci layout %s has %d images (%q): name one as oci:%s:REF", dir, len(picked), names, dir)
	}
	d := picked[0]
	if d.MediaType.IsIndex() {
		child, err := idx.ImageIndex(d.Digest)
		if err != nil {
			return nil, err
		}
		return imageForPlatform(child)
	}
	return idx.Image(d.Digest)
}

// imageForPlatform picks the host's platform from a multi-platform index.
func imageForPlatform(idx v1.ImageIndex) (v1.Image, error) {
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	want := platform()
	for _, d := range im.Manifests {
		if d.Platform != nil && d.Platform.Satisfies(want) && d.MediaType.IsImage() {
			return idx.Image(d.Digest)
		}
	}
	return nil, fmt.Errorf("no image for %s/%s in the index", want.OS, want.Architecture)
}

// layoutName is a path an OCI layout may hold.
var layoutName = regexp.MustCompile(`^(oci-layout|index\.json|blobs/[a-z0-9]+/[a-f0-9]{32,128})$`)

// extractLayoutArchive unpacks an oci-archive (a tar of an OCI layout)
// into dir. Only the layout's own files are taken (oci-layout, index.json,
// blobs/ALG/HEX, as regular files); anything else in the tar is ignored, so
// nothing lands outside dir.
func extractLayoutArchive(file, dir string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	tr := tar.NewReader(f)
	found := false
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		n := filepath.ToSlash(filepath.Clean(h.Name))
		if h.Typeflag != tar.TypeReg || !layoutName.MatchString(n) {
			continue
		}
		found = found || n == "index.json"
		if err := root.MkdirAll(filepath.Dir(n), 0o755); err != nil {
			return err
		}
		out, err := root.OpenFile(n, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			return err
		}
		_, err = io.Copy(out, tr)
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	if !found {
		return errors.New("no index.json: not an OCI layout archive")
	}
	return nil
}
