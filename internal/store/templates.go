package store

import (
	"encoding/json"
	"fmt"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TemplateState is where a snapshot template is in its life. Its string
// values are stored and must never change.
type TemplateState string

const (
	// TemplateWriting: the record exists; the template's machine is
	// booting or being captured. A record found in it at start is a
	// capture cut short: its machine, directory and record are removed.
	TemplateWriting TemplateState = "writing"
	// TemplateReady: the state and the disk layer are complete; creates
	// restore from it.
	TemplateReady TemplateState = "ready"
)

// Template is the persistent record of one host group's snapshot
// template: a machine booted once to agent ready and captured (memory,
// devices, and its disk as a read-only layer), which creates of the
// group restore. It is written (in TemplateWriting) before anything is
// made.
type Template struct {
	ID    string        `json:"id"`
	Group string        `json:"group"`
	State TemplateState `json:"state"`
	// Key is what the template was made from (image, kernel, the group's
	// size, ...) as a digest: a create whose key differs builds anew.
	Key       string    `json:"key"`
	CreatedAt time.Time `json:"created_at"`
	// Dir holds everything of the template; StateDir is its captured
	// state, Layer its read-only disk layer of LayerFormat.
	Dir         string `json:"dir"`
	StateDir    string `json:"state_dir"`
	Layer       string `json:"layer"`
	LayerFormat string `json:"layer_format"`
	// RunDir is where its machine ran while it was being made.
	RunDir  string `json:"run_dir"`
	Backend string `json:"backend"`
	// Name is the guest hostname the template booted with: a clone's
	// identity replaces it.
	Name string `json:"name"`
}

// PutTemplate writes t, replacing its record.
func (s *Store) PutTemplate(t Template) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		data, err := json.Marshal(t)
		if err != nil {
			return err
		}
		return tx.Bucket(bucketTemplate).Put([]byte(t.ID), data)
	})
	if err != nil {
		return fmt.Errorf("write template %q: %w", t.ID, err)
	}
	return nil
}

// GetTemplate returns the record of id, or an error wrapping
// api.ErrNotFound.
func (s *Store) GetTemplate(id string) (Template, error) {
	return getRecord[Template](s.db, bucketTemplate, "template", id)
}

// ListTemplates returns every template record, newest first.
func (s *Store) ListTemplates() ([]Template, error) {
	out, err := listRecords[Template](s.db, bucketTemplate, "templates")
	if err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.After(out[j].CreatedAt)
		}
		return out[i].ID > out[j].ID
	})
	return out, nil
}

// DeleteTemplate removes the record of id; a missing record is not an
// error.
func (s *Store) DeleteTemplate(id string) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketTemplate).Delete([]byte(id))
	})
	if err != nil {
		return fmt.Errorf("delete template %q: %w", id, err)
	}
	return nil
}
