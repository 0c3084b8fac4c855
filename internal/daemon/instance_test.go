package daemon

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/openslicer/openslicer/internal/network"
)

func TestChooseInstance(t *testing.T) {
	fresh := func() string { return "feedf00d" }
	rec := &instanceFile{ID: "0a1b2c3d", DataDir: "/srv/old"}
	tests := []struct {
		name string
		seen instanceSeen
		want instanceChoice
	}{
		{"first start", instanceSeen{}, instanceChoice{ID: "feedf00d", Write: true, Note: "new instance id"}},
		{"same directory", instanceSeen{Recorded: rec, SameDir: true}, instanceChoice{ID: "0a1b2c3d"}},
		{"moved", instanceSeen{Recorded: rec}, instanceChoice{ID: "0a1b2c3d", Write: true, Note: "data directory moved from /srv/old: instance id kept"}},
		{"copied", instanceSeen{Recorded: rec, OriginalHolds: true}, instanceChoice{ID: "feedf00d", Write: true,
			Note: "this data directory is a copy of /srv/old, which keeps its instance id: new instance id"}},
		{"bad id", instanceSeen{Recorded: &instanceFile{ID: "../x", DataDir: "/srv/old"}, SameDir: true},
			instanceChoice{ID: "feedf00d", Write: true, Note: `recorded instance id "../x" is not valid: new instance id`}},
	}
	for _, tt := range tests {
		if got := chooseInstance(tt.seen, fresh); got != tt.want {
			t.Errorf("%s: chooseInstance() = %+v, want %+v", tt.name, got, tt.want)
		}
	}
}

// The id survives restarts, a symlinked path and a move; a copy gets its
// own.
func TestLoadInstance(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	root := t.TempDir()
	load := func(dir string) string {
		t.Helper()
		id, err := loadInstance(dir, log)
		if err != nil {
			t.Fatal(err)
		}
		if err := network.CheckInstance(id); err != nil {
			t.Fatal(err)
		}
		return id
	}
	orig := filepath.Join(root, "a")
	id := load(orig)
	if again := load(orig); again != id {
		t.Errorf("restart: id %s, then %s", id, again)
	}
	link := filepath.Join(root, "link")
	if err := os.Symlink(orig, link); err != nil {
		t.Fatal(err)
	}
	if via := load(link); via != id {
		t.Errorf("through a symlink: id %s, want %s", via, id)
	}

	// A copy while the original is in place.
	cp := filepath.Join(root, "copy")
	if err := os.MkdirAll(filepath.Join(cp, ".slicer"), 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(instancePath(orig))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(instancePath(cp), data, 0o644); err != nil {
		t.Fatal(err)
	}
	copyID := load(cp)
	if copyID == id {
		t.Errorf("a copy kept the original's id %s", id)
	}
	if again := load(cp); again != copyID {
		t.Errorf("the copy's id changed on restart: %s, then %s", copyID, again)
	}
	if again := load(orig); again != id {
		t.Errorf("the original's id changed after the copy started: %s, then %s", id, again)
	}

	// A move: the original is gone.
	moved := filepath.Join(root, "moved")
	if err := os.Rename(orig, moved); err != nil {
		t.Fatal(err)
	}
	if got := load(moved); got != id {
		t.Errorf("after a move: id %s, want %s", got, id)
	}
	if rec := readInstance(instancePath(moved)); rec == nil || rec.DataDir != moved {
		t.Errorf("after a move the file records %+v, want the new directory", rec)
	}
}
