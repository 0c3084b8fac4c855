package store

import (
	"encoding/json"
	"fmt"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/openslicer/openslicer/api"
)

// CommitState is where a commit is in its life. Its string values are
// stored and must never change.
type CommitState string

const (
	// CommitWriting: the record exists, the layer is being made. A record
	// found in it at start is a commit cut short: it is undone.
	CommitWriting CommitState = "writing"
	// CommitReady: the layer is complete; the commit can be forked.
	CommitReady CommitState = "ready"
	// CommitDeleting: the layer is being removed. A record found in it at
	// start finishes its removal.
	CommitDeleting CommitState = "deleting"
)

// Commit is the persistent record of one commit: a read-only disk layer
// made from a stopped VM, and what a fork of it inherits from that VM.
// It is written (in CommitWriting) before the layer is made.
type Commit struct {
	ID        string            `json:"id"`
	State     CommitState       `json:"state"`
	Mode      string            `json:"mode"`
	CreatedAt time.Time         `json:"created_at"`
	Tags      []string          `json:"tags,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
	CacheKey  string            `json:"cache_key,omitempty"`

	// Source is the VM committed, Group its host group.
	Source string `json:"source"`
	Group  string `json:"group"`
	// Layer is the absolute path of the read-only disk layer, LayerFormat
	// its format ("qcow2" or "raw").
	Layer       string `json:"layer"`
	LayerFormat string `json:"layer_format"`
	// SourceDisk and SourceFormat are the source's disk as it was when the
	// commit began: undoing a commit cut short gives it back.
	SourceDisk   string `json:"source_disk"`
	SourceFormat string `json:"source_format"`
	// Parent is the commit whose layer this one's is copy-on-write over
	// (the source was itself a fork, or committed before); "" when it is
	// over the image alone.
	Parent string `json:"parent,omitempty"`
	// StateDir is a memory commit's captured state (memory and devices),
	// which its forks restore; "" for a disk commit. SourceOverlay is the
	// new disk a memory commit moves its running source onto: the source's
	// old disk file, at SourceDisk, becomes the layer (Layer ==
	// SourceDisk), since a running QEMU reopens its images by name.
	StateDir      string `json:"state_dir,omitempty"`
	SourceOverlay string `json:"source_overlay,omitempty"`

	// What a fork inherits from the source, as it was when committed.
	CPUs     int      `json:"cpus"`
	RamBytes int64    `json:"ram_bytes"`
	VMTags   []string `json:"vm_tags,omitempty"` // without name=: a name is one VM's
	Secrets  []string `json:"secrets,omitempty"` // none: all, unless NoSecrets
	// NoSecrets: the source was granted none.
	NoSecrets bool                         `json:"no_secrets,omitempty"`
	Network   *api.CreateNodeNetworkPolicy `json:"network,omitempty"`
	Backend   string                       `json:"backend,omitempty"`
	// Template is the snapshot template whose layer the source's disk
	// was over, and so this commit's layer is (templates.go).
	Template string `json:"template,omitempty"`
	// HasNetwork: the captured machine of a memory commit had a network
	// card, which its forks' machines must have too.
	HasNetwork bool `json:"has_network,omitempty"`
}

// CreateCommit writes the new record c. An ID already recorded is
// ErrAlreadyExists; a cache key another commit holds (in any state) is
// ErrConflict naming that commit. The check and the write are one
// transaction, so two commits can never both hold one key.
func (s *Store) CreateCommit(c Commit) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketCommits)
		if b.Get([]byte(c.ID)) != nil {
			return fmt.Errorf("commit %q: %w", c.ID, api.ErrAlreadyExists)
		}
		if c.CacheKey != "" {
			err := b.ForEach(func(_, v []byte) error {
				var other Commit
				if err := json.Unmarshal(v, &other); err != nil {
					return err
				}
				if other.CacheKey == c.CacheKey {
					return fmt.Errorf("cache key %q is held by commit %s (of vm %q): %w", c.CacheKey, other.ID, other.Source, api.ErrConflict)
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		return putCommit(b, c)
	})
	if err != nil {
		return fmt.Errorf("write commit %q: %w", c.ID, err)
	}
	return nil
}

// PutCommit writes c, replacing its record.
func (s *Store) PutCommit(c Commit) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		return putCommit(tx.Bucket(bucketCommits), c)
	})
	if err != nil {
		return fmt.Errorf("write commit %q: %w", c.ID, err)
	}
	return nil
}

// FinishCommit writes the commit c and the record of its source vm in one
// transaction: the commit becomes ready exactly when the VM's record says
// its disk is over the new layer.
func (s *Store) FinishCommit(c Commit, vm VM) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		if err := putCommit(tx.Bucket(bucketCommits), c); err != nil {
			return err
		}
		return putVM(tx.Bucket(bucketVMs), vm)
	})
	if err != nil {
		return fmt.Errorf("write commit %q of vm %q: %w", c.ID, vm.Hostname, err)
	}
	return nil
}

// GetCommit returns the record of id, or an error wrapping
// api.ErrNotFound.
func (s *Store) GetCommit(id string) (Commit, error) {
	return getRecord[Commit](s.db, bucketCommits, "commit", id)
}

// ListCommits returns every commit record, oldest first.
func (s *Store) ListCommits() ([]Commit, error) {
	out, err := listRecords[Commit](s.db, bucketCommits, "commits")
	if err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.Before(out[j].CreatedAt)
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// DeleteCommit removes the record of id; a missing record is not an error.
func (s *Store) DeleteCommit(id string) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketCommits).Delete([]byte(id))
	})
	if err != nil {
		return fmt.Errorf("delete commit %q: %w", id, err)
	}
	return nil
}

func putCommit(b *bolt.Bucket, c Commit) error {
	data, err := json.Marshal(c)
	if err != nil {
		return err
	}
	return b.Put([]byte(c.ID), data)
}
