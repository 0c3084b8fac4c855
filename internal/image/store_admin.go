package image

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/imageref"
)

// Entry is one image in the cache, for `slicer image list`.
type Entry struct {
	Name   string // as pulled; "" for an image whose names were removed while in use
	ID     string
	Digest string
	Pulled time.Time
	Size   int64    // bytes the image's files use on disk
	Users  []string // VM disks using it
}

// List returns every image in the cache, by name.
func (s *Store) List(ctx context.Context, extra UsageChecker) ([]Entry, error) {
	refs, err := s.readRefs()
	if err != nil {
		return nil, err
	}
	named := map[string]bool{}
	var out []Entry
	for n, r := range refs {
		e := Entry{Name: n, ID: r.ID, Digest: r.Digest, Pulled: r.Pulled}
		named[r.ID] = true
		out = append(out, e)
	}
	ids, err := s.imageIDs()
	if err != nil {
		return nil, err
	}
	for _, id := range ids {
		if !named[id] {
			out = append(out, Entry{ID: id})
		}
	}
	for i := range out {
		dir := s.imageDir(out[i].ID)
		out[i].Size = duBytes(dir)
		if out[i].Users, err = s.users(ctx, dir, extra); err != nil {
			return nil, err
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// Remove removes an image by the name it was pulled as (any spelling of
// the same reference), or by its ID or an ID prefix of at least 12 hex
// digits. The image is deleted, with the layer blobs no other image needs,
// once no name refers to it; an image a VM disk uses is refused with
// api.ErrConflict and left as it was.
func (s *Store) Remove(ctx context.Context, name string, extra UsageChecker) error {
	unlock, err := s.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	refs, err := s.readRefs()
	if err != nil {
		return err
	}
	names, id, err := s.match(refs, name)
	if err != nil {
		return err
	}
	others := 0
	for n, r := range refs {
		if r.ID == id && !contains(names, n) {
			others++
		}
	}
	if others == 0 {
		if err := s.removeImage(ctx, id, extra); err != nil {
			return fmt.Errorf("remove image %s: %w", name, err)
		}
	}
	for _, n := range names {
		delete(refs, n)
	}
	if err := s.writeRefs(refs); err != nil {
		return err
	}
	return s.collectBlobs()
}

// Wipe removes every image no VM uses, and every blob no kept image
// needs. It returns the IDs removed and those kept because they are in use.
func (s *Store) Wipe(ctx context.Context, extra UsageChecker) (removed, kept []string, err error) {
	unlock, err := s.lock(ctx)
	if err != nil {
		return nil, nil, err
	}
	defer unlock()
	refs, err := s.readRefs()
	if err != nil {
		return nil, nil, err
	}
	ids, err := s.imageIDs()
	if err != nil {
		return nil, nil, err
	}
	for _, id := range ids {
		err := s.removeImage(ctx, id, extra)
		switch {
		case errors.Is(err, api.ErrConflict):
			kept = append(kept, id)
			continue
		case err != nil:
			return removed, kept, err
		}
		removed = append(removed, id)
		for n, r := range refs {
			if r.ID == id {
				delete(refs, n)
			}
		}
	}
	if err := s.writeRefs(refs); err != nil {
		return removed, kept, err
	}
	return removed, kept, s.collectBlobs()
}

// match finds the names and the image ID that name means.
func (s *Store) match(refs map[string]refEntry, name string) ([]string, string, error) {
	if r, ok := refs[name]; ok {
		return []string{name}, r.ID, nil
	}
	if src, err := imageref.Parse(name, false); err == nil {
		if r, ok := refs[src.String()]; ok {
			return []string{src.String()}, r.ID, nil
		}
	}
	hexID := strings.TrimPrefix(name, "sha256:")
	if len(hexID) >= 12 {
		ids, err := s.imageIDs()
		if err != nil {
			return nil, "", err
		}
		var found []string
		for _, id := range ids {
			if strings.HasPrefix(strings.TrimPrefix(id, "sha256:"), hexID) {
				found = append(found, id)
			}
		}
		if len(found) == 1 {
			var names []string
			for n, r := range refs {
				if r.ID == found[0] {
					names = append(names, n)
				}
			}
			return names, found[0], nil
		}
	}
	return nil, "", fmt.Errorf("image %s is not in the cache: %w", name, api.ErrNotFound)
}

// removeImage deletes the image directory of id unless a VM uses it.
func (s *Store) removeImage(ctx context.Context, id string, extra UsageChecker) error {
	dir := s.imageDir(id)
	unlock, err := lockDir(ctx, filepath.Join(dir, ".users.lock"), func() {})
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer unlock()
	users, err := s.users(ctx, dir, extra)
	if err != nil {
		return err
	}
	if len(users) > 0 {
		return fmt.Errorf("in use by %d VM disk(s): %s: %w", len(users), strings.Join(users, ", "), api.ErrConflict)
	}
	// Rename first, so a half-removed image is never mistaken for one.
	gone := filepath.Join(filepath.Dir(dir), ".build-removed-"+filepath.Base(dir))
	if err := os.Rename(dir, gone); err != nil {
		return err
	}
	return os.RemoveAll(gone)
}

// users lists the disks using the image in dir: those it registered, and
// those extra knows of.
func (s *Store) users(ctx context.Context, dir string, extra UsageChecker) ([]string, error) {
	users, err := DiskUsers(dir)
	if err != nil {
		return nil, err
	}
	if extra != nil {
		more, err := extra.DisksUsing(ctx, dir)
		if err != nil {
			return nil, err
		}
		for _, u := range more {
			if !contains(users, u) {
				users = append(users, u)
			}
		}
	}
	return users, nil
}

// imageIDs lists the built images ("sha256:<hex>").
func (s *Store) imageIDs() ([]string, error) {
	ents, err := os.ReadDir(filepath.Join(s.Dir, "images"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, e := range ents {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			ids = append(ids, "sha256:"+e.Name())
		}
	}
	return ids, nil
}

// collectBlobs deletes the layer blobs no built image lists.
func (s *Store) collectBlobs() error {
	ids, err := s.imageIDs()
	if err != nil {
		return err
	}
	keep := map[string]bool{}
	for _, id := range ids {
		img, err := loadOCI(s.imageDir(id))
		if err != nil {
			continue
		}
		for _, l := range img.Layers {
			keep[strings.TrimPrefix(l, "sha256:")] = true
		}
	}
	blobs, _ := filepath.Glob(filepath.Join(s.Dir, "blobs", "sha256", "*"))
	for _, b := range blobs {
		if n := filepath.Base(b); !keep[n] && !strings.HasPrefix(n, ".") {
			if err := os.Remove(b); err != nil {
				return err
			}
		}
	}
	return nil
}

// duBytes is the disk space the files under dir use.
func duBytes(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if st, err := d.Info(); err == nil && !d.IsDir() {
			n += allocatedBytes(st)
		}
		return nil
	})
	return n
}

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}
