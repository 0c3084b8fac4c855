package store

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/openslicer/openslicer/api"
)

// TestTemplates: a template record survives a reopen of the store, lists
// newest first, changes state in place, and is gone once deleted.
func TestTemplates(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	old := Template{ID: "tpl-a", Group: "g", State: TemplateReady, Key: "k1", CreatedAt: time.Unix(100, 0)}
	cur := Template{ID: "tpl-b", Group: "g", State: TemplateWriting, Key: "k2", CreatedAt: time.Unix(200, 0)}
	for _, tp := range []Template{old, cur} {
		if err := s.PutTemplate(tp); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	if s, err = Open(path); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	list, err := s.ListTemplates()
	if err != nil || len(list) != 2 || list[0].ID != "tpl-b" || list[1].ID != "tpl-a" {
		t.Fatalf("ListTemplates = %+v, %v; want tpl-b then tpl-a", list, err)
	}
	cur.State = TemplateReady
	if err := s.PutTemplate(cur); err != nil {
		t.Fatal(err)
	}
	if got, err := s.GetTemplate("tpl-b"); err != nil || got.State != TemplateReady || got.Key != "k2" {
		t.Errorf("GetTemplate = %+v, %v; want tpl-b ready", got, err)
	}
	if err := s.DeleteTemplate("tpl-a"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetTemplate("tpl-a"); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("GetTemplate of a deleted template: %v, want api.ErrNotFound", err)
	}
}
