package daemon

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/openslicer/openslicer/internal/network"
)

// The instance id tells this daemon's host objects (network devices,
// namespaces, nftables tables) from another daemon's. It is a random id
// made once and kept in the data directory, beside the state that records
// what those objects are, rather than a hash of the directory's path: a
// data directory that is moved, or reached through a symlink or a bind
// mount, keeps its id and so still finds its objects, where a path hash
// would orphan all of them. The file also records the directory it was
// last used in, so that a copy, which would carry the same id, is told
// apart: when that directory still exists, is another directory, and holds
// the same id, this one is a copy and takes a new id.

// instanceFile is <data dir>/.slicer/instance.json.
type instanceFile struct {
	ID      string `json:"id"`
	DataDir string `json:"data_dir"`
}

// instanceSeen is what start-up finds of the instance id.
type instanceSeen struct {
	// Recorded is the file's content; nil when there is none or it is
	// unreadable.
	Recorded *instanceFile
	// SameDir: Recorded.DataDir is this data directory (by identity, not
	// by path).
	SameDir bool
	// OriginalHolds: Recorded.DataDir is another directory that exists
	// and holds the same id: this directory is a copy of it.
	OriginalHolds bool
}

// instanceChoice is the id to use and whether to record it.
type instanceChoice struct {
	ID    string
	Write bool
	// Note, when set, is logged: why the id is new or was carried over.
	Note string
}

// chooseInstance decides the instance id from what start-up found;
// newID makes a fresh one.
func chooseInstance(seen instanceSeen, newID func() string) instanceChoice {
	rec := seen.Recorded
	switch {
	case rec == nil:
		return instanceChoice{ID: newID(), Write: true, Note: "new instance id"}
	case network.CheckInstance(rec.ID) != nil:
		return instanceChoice{ID: newID(), Write: true, Note: fmt.Sprintf("recorded instance id %q is not valid: new instance id", rec.ID)}
	case seen.SameDir:
		return instanceChoice{ID: rec.ID}
	case seen.OriginalHolds:
		return instanceChoice{ID: newID(), Write: true,
			Note: "this data directory is a copy of " + rec.DataDir + ", which keeps its instance id: new instance id"}
	default:
		return instanceChoice{ID: rec.ID, Write: true, Note: "data directory moved from " + rec.DataDir + ": instance id kept"}
	}
}

// loadInstance returns the instance id of dataDir, making and recording it
// on first use.
func loadInstance(dataDir string, log *slog.Logger) (string, error) {
	path := instancePath(dataDir)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return "", fmt.Errorf("create %s: %w", filepath.Dir(path), err)
	}
	for range 2 {
		seen := seeInstance(dataDir)
		c := chooseInstance(seen, newInstanceID)
		if !c.Write {
			return c.ID, nil
		}
		err := writeInstance(path, instanceFile{ID: c.ID, DataDir: dataDir}, seen.Recorded == nil)
		if errors.Is(err, os.ErrExist) {
			continue // another process made it first: read theirs
		}
		if err != nil {
			return "", err
		}
		log.Info(c.Note, "instance", c.ID, "file", path)
		return c.ID, nil
	}
	return "", fmt.Errorf("instance id %s keeps changing: is another daemon starting on %s?", path, dataDir)
}

func instancePath(dataDir string) string {
	return filepath.Join(dataDir, ".slicer", "instance.json")
}

// seeInstance reads dataDir's instance file and looks at the directory it
// names.
func seeInstance(dataDir string) instanceSeen {
	rec := readInstance(instancePath(dataDir))
	if rec == nil {
		return instanceSeen{}
	}
	seen := instanceSeen{Recorded: rec, SameDir: rec.DataDir == dataDir}
	here, err := os.Stat(dataDir)
	there, err2 := os.Stat(rec.DataDir)
	if err == nil && err2 == nil && os.SameFile(here, there) {
		seen.SameDir = true
	}
	if !seen.SameDir && err2 == nil {
		if orig := readInstance(instancePath(rec.DataDir)); orig != nil && orig.ID == rec.ID {
			seen.OriginalHolds = true
		}
	}
	return seen
}

func readInstance(path string) *instanceFile {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var f instanceFile
	if json.Unmarshal(data, &f) != nil {
		return nil
	}
	return &f
}

// writeInstance records f at path, atomically. With exclusive, a file
// already there (made meanwhile by another process) is os.ErrExist.
func writeInstance(path string, f instanceFile, exclusive bool) error {
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	tmp := fmt.Sprintf("%s.%d.tmp", path, os.Getpid())
	if err := os.WriteFile(tmp, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("record instance id: %w", err)
	}
	defer os.Remove(tmp)
	if exclusive {
		err = os.Link(tmp, path)
	} else {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		return fmt.Errorf("record instance id: %w", err)
	}
	return nil
}

func newInstanceID() string {
	b := make([]byte, 4)
	rand.Read(b)
	return hex.EncodeToString(b)
}
