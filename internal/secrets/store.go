// Package secrets is the daemon's host-side secret store (spec §3.13).
//
// A Store owns one directory, ./.secrets by default (spec §5.3), and keeps
// each secret's value in its own file and the metadata of all secrets in one
// index file:
//
//	<dir>/            mode 0700, owned by the daemon's user
//	  <name>          the value, mode 0600
//	  .index.json     {"version":1,"secrets":{"<name>":{permissions,uid,gid,modified_at}}}
//	  .tmp-*          temporary files, only while a write is under way
//
// The permissions, uid and gid of a secret are what the guest copy gets; on
// the host every file stays 0600. Secret names never start with '.', so they
// cannot collide with the index or a temporary file.
//
// Every file is written to a temporary file, fsynced and renamed into place,
// then the directory is fsynced. The index is the commit point: a value file
// the index does not name is ignored and overwritten by the next Create of
// that name, and temporary files a crash left behind are removed by Open.
//
// A Store is safe for concurrent use. It must be the only writer of its
// directory: it keeps the index in memory and does not lock across
// processes.
package secrets

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/openslicer/openslicer/api"
)

const (
	indexName    = ".index.json"
	indexVersion = 1
)

// Entry is one secret with its value, as synced into a guest.
type Entry struct {
	api.Secret
	Data []byte
}

// meta is what the index records about one secret.
type meta struct {
	Permissions string    `json:"permissions"`
	UID         uint32    `json:"uid"`
	GID         uint32    `json:"gid"`
	ModifiedAt  time.Time `json:"modified_at"`
}

type index struct {
	Version int             `json:"version"`
	Secrets map[string]meta `json:"secrets"`
}

// Store is a directory of secrets. Create one with Open.
type Store struct {
	dir string
	now func() time.Time

	mu    sync.RWMutex
	metas map[string]meta // the index as last written
}

// Open opens the store in dir, creating dir with mode 0700 when missing.
//
// An existing dir that grants any permission to group or others, or that
// is owned by another user, is refused rather than fixed: a loose mode
// means the values may already have been exposed, or that dir is not a
// directory meant for secrets, and either deserves a person's look. The
// error names the command that fixes it.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create secrets dir: %w", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("stat secrets dir: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("secrets dir %s is not a directory", dir)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("secrets dir %s has mode %04o, open to group or others; fix with: chmod 0700 %s", dir, uint32(perm), dir)
	}
	if err := checkOwner(dir, fi); err != nil {
		return nil, err
	}
	metas, err := readIndex(filepath.Join(dir, indexName))
	if err != nil {
		return nil, err
	}
	if err := removeTemps(dir); err != nil {
		return nil, err
	}
	return &Store{dir: dir, now: time.Now, metas: metas}, nil
}

// Dir returns the directory the store keeps its files in.
func (s *Store) Dir() string { return s.dir }

// Create stores a new secret. It wraps api.ErrInvalid for a bad name,
// permissions or base64 data, and api.ErrAlreadyExists when the name is
// taken.
func (s *Store) Create(ctx context.Context, req api.CreateSecretRequest) (api.Secret, error) {
	if err := ValidateName(req.Name); err != nil {
		return api.Secret{}, err
	}
	perm, err := normalPermissions(req.Permissions)
	if err != nil {
		return api.Secret{}, fmt.Errorf("create secret %q: %w", req.Name, err)
	}
	data, err := decodeData(req.Data)
	if err != nil {
		return api.Secret{}, fmt.Errorf("create secret %q: %w", req.Name, err)
	}
	if err := ctx.Err(); err != nil {
		return api.Secret{}, err
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.metas[req.Name]; ok {
		return api.Secret{}, fmt.Errorf("secret %q: %w", req.Name, api.ErrAlreadyExists)
	}
	m := meta{Permissions: perm, UID: req.UID, GID: req.GID, ModifiedAt: s.now().UTC()}
	if err := writeFileAtomic(s.dir, req.Name, data); err != nil {
		return api.Secret{}, fmt.Errorf("create secret %q: %w", req.Name, err)
	}
	if err := s.commit(req.Name, &m); err != nil {
		// The index does not name the value, so it is garbage; drop it.
		os.Remove(filepath.Join(s.dir, req.Name))
		return api.Secret{}, fmt.Errorf("create secret %q: %w", req.Name, err)
	}
	return m.secret(req.Name, int64(len(data))), nil
}

// Update changes the fields req provides and leaves the others. An empty
// Data or Permissions counts as not provided: the Go SDK always sends
// "data" (spec §3.13). It wraps api.ErrNotFound for an unknown name and
// api.ErrInvalid for bad permissions or base64 data. modified_at moves
// whenever a field is provided.
func (s *Store) Update(ctx context.Context, name string, req api.UpdateSecretRequest) (api.Secret, error) {
	if err := ValidateName(name); err != nil {
		return api.Secret{}, fmt.Errorf("secret %q: %w", name, api.ErrNotFound)
	}
	if err := ctx.Err(); err != nil {
		return api.Secret{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old, ok := s.metas[name]
	if !ok {
		return api.Secret{}, fmt.Errorf("secret %q: %w", name, api.ErrNotFound)
	}
	m, data, changed, err := planUpdate(old, req, s.now().UTC())
	if err != nil {
		return api.Secret{}, fmt.Errorf("update secret %q: %w", name, err)
	}
	path := filepath.Join(s.dir, name)
	if !changed {
		fi, err := os.Stat(path)
		if err != nil {
			return api.Secret{}, fmt.Errorf("stat secret %q: %w", name, err)
		}
		return old.secret(name, fi.Size()), nil
	}
	if data == nil {
		if err := s.commit(name, &m); err != nil {
			return api.Secret{}, fmt.Errorf("update secret %q: %w", name, err)
		}
		fi, err := os.Stat(path)
		if err != nil {
			return api.Secret{}, fmt.Errorf("stat secret %q: %w", name, err)
		}
		return m.secret(name, fi.Size()), nil
	}

	prev, err := os.ReadFile(path)
	if err != nil {
		return api.Secret{}, fmt.Errorf("read secret %q: %w", name, err)
	}
	if err := writeFileAtomic(s.dir, name, data); err != nil {
		return api.Secret{}, fmt.Errorf("update secret %q: %w", name, err)
	}
	if err := s.commit(name, &m); err != nil {
		// Put the old value back so value and metadata still agree.
		if rerr := writeFileAtomic(s.dir, name, prev); rerr != nil {
			err = errors.Join(err, fmt.Errorf("restore previous value: %w", rerr))
		}
		return api.Secret{}, fmt.Errorf("update secret %q: %w", name, err)
	}
	return m.secret(name, int64(len(data))), nil
}

// planUpdate computes the metadata and value after req: the new value is
// nil when req leaves it unchanged, and changed is false when req provides
// no field at all.
func planUpdate(old meta, req api.UpdateSecretRequest, now time.Time) (m meta, data []byte, changed bool, err error) {
	m = old
	if req.Data != nil && *req.Data != "" {
		if data, err = decodeData(*req.Data); err != nil {
			return meta{}, nil, false, err
		}
		changed = true
	}
	if req.Permissions != nil && *req.Permissions != "" {
		if m.Permissions, err = normalPermissions(*req.Permissions); err != nil {
			return meta{}, nil, false, err
		}
		changed = true
	}
	if req.UID != nil {
		m.UID, changed = *req.UID, true
	}
	if req.GID != nil {
		m.GID, changed = *req.GID, true
	}
	if changed {
		m.ModifiedAt = now
	}
	return m, data, changed, nil
}

// Delete removes a secret. It wraps api.ErrNotFound for an unknown name.
func (s *Store) Delete(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.metas[name]; !ok {
		return fmt.Errorf("secret %q: %w", name, api.ErrNotFound)
	}
	if err := s.commit(name, nil); err != nil {
		return fmt.Errorf("delete secret %q: %w", name, err)
	}
	// The secret is gone once the index says so; the value file follows.
	if err := os.Remove(filepath.Join(s.dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete secret %q: remove value: %w", name, err)
	}
	if err := syncDir(s.dir); err != nil {
		return fmt.Errorf("delete secret %q: %w", name, err)
	}
	return nil
}

// List returns the metadata of every secret, sorted by name. It never
// returns values.
func (s *Store) List() ([]api.Secret, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]api.Secret, 0, len(s.metas))
	for _, name := range s.sortedNames() {
		fi, err := os.Stat(filepath.Join(s.dir, name))
		if err != nil {
			return nil, fmt.Errorf("stat secret %q: %w", name, err)
		}
		out = append(out, s.metas[name].secret(name, fi.Size()))
	}
	return out, nil
}

// Get returns the metadata and value of one secret. It wraps
// api.ErrNotFound for an unknown name.
func (s *Store) Get(name string) (api.Secret, []byte, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	e, err := s.entry(name)
	if err != nil {
		return api.Secret{}, nil, err
	}
	return e.Secret, e.Data, nil
}

// Select returns the named secrets with their values, sorted by name and
// without duplicates: every secret when names is nil, none when it is
// empty. An unknown name wraps api.ErrNotFound, so that a VM asking for a
// secret that does not exist is an error rather than a silent omission.
func (s *Store) Select(names []string) ([]Entry, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if names == nil {
		names = s.sortedNames()
	} else {
		names = slices.Clone(names)
		slices.Sort(names)
		names = slices.Compact(names)
	}
	out := make([]Entry, 0, len(names))
	for _, name := range names {
		e, err := s.entry(name)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// entry reads one secret; the caller holds s.mu.
func (s *Store) entry(name string) (Entry, error) {
	m, ok := s.metas[name]
	if !ok {
		return Entry{}, fmt.Errorf("secret %q: %w", name, api.ErrNotFound)
	}
	data, err := os.ReadFile(filepath.Join(s.dir, name))
	if err != nil {
		return Entry{}, fmt.Errorf("read secret %q: %w", name, err)
	}
	return Entry{Secret: m.secret(name, int64(len(data))), Data: data}, nil
}

// sortedNames lists the secrets by name; the caller holds s.mu.
func (s *Store) sortedNames() []string {
	names := make([]string, 0, len(s.metas))
	for name := range s.metas {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// commit writes the index with name set to *m, or removed when m is nil,
// and only then updates the in-memory copy. The caller holds s.mu.
func (s *Store) commit(name string, m *meta) error {
	next := make(map[string]meta, len(s.metas)+1)
	for k, v := range s.metas {
		next[k] = v
	}
	if m == nil {
		delete(next, name)
	} else {
		next[name] = *m
	}
	b, err := json.MarshalIndent(index{Version: indexVersion, Secrets: next}, "", "  ")
	if err != nil {
		return fmt.Errorf("encode index: %w", err)
	}
	if err := writeFileAtomic(s.dir, indexName, append(b, '\n')); err != nil {
		return fmt.Errorf("write index: %w", err)
	}
	s.metas = next
	return nil
}

// readIndex loads and checks the index; a missing file is an empty store.
func readIndex(path string) (map[string]meta, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]meta{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read secrets index: %w", err)
	}
	var idx index
	if err := json.Unmarshal(b, &idx); err != nil {
		return nil, fmt.Errorf("decode secrets index %s: %w", path, err)
	}
	if idx.Version != indexVersion {
		return nil, fmt.Errorf("secrets index %s has version %d, want %d", path, idx.Version, indexVersion)
	}
	if idx.Secrets == nil {
		idx.Secrets = map[string]meta{}
	}
	for name, m := range idx.Secrets {
		if err := ValidateName(name); err != nil {
			return nil, fmt.Errorf("secrets index %s: %w", path, err)
		}
		if _, err := ParsePermissions(m.Permissions); err != nil {
			return nil, fmt.Errorf("secrets index %s: secret %q: %w", path, name, err)
		}
	}
	return idx.Secrets, nil
}

func (m meta) secret(name string, size int64) api.Secret {
	t := m.ModifiedAt
	return api.Secret{
		Name:        name,
		Size:        size,
		Permissions: m.Permissions,
		UID:         m.UID,
		GID:         m.GID,
		ModifiedAt:  &t,
	}
}
