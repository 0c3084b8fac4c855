package hypervisor

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/openslicer/openslicer/api"
)

// A state directory holds one suspended machine:
//
//	<dir>/manifest.json  who wrote it, in which format, which file holds
//	                     what, and the shape of the machine it was taken from
//	<dir>/<files>        the backend's own files, named by the manifest
//
// QEMU writes one migration stream that holds both memory and device
// state; Firecracker writes a memory file and a vmstate file. Each file is
// listed with what it holds (HoldsMemory, HoldsDevices) and its size.
//
// A state directory is written into a temporary directory beside it
// (".<name>.partial-*", see CreateState) and renamed into place once every
// file and the manifest are on disk, so a directory found at its path is
// whole. A restore reads the manifest first (OpenState) and refuses, with
// a message naming each difference, a state from another backend, from a
// newer format, or from a machine of another shape, before a backend
// process could crash on it.

// ManifestName is the manifest's file name in a state directory.
const ManifestName = "manifest.json"

// StateVersion is the version of the manifest format this package writes;
// it reads this one and every earlier one.
const StateVersion = 1

// What a state file holds.
const (
	HoldsMemory  = "memory"
	HoldsDevices = "devices"
)

// Manifest describes a state directory.
type Manifest struct {
	// Version is the manifest format (StateVersion when written).
	Version int `json:"version"`
	// Backend is the Backend.Name that wrote it, the only one that can
	// restore it.
	Backend string `json:"backend"`
	// Format is the backend's own name for how its files are written,
	// e.g. "qemu-migration"; the backend checks it on restore.
	Format    string      `json:"format"`
	CreatedAt time.Time   `json:"created_at"`
	Files     []StateFile `json:"files"`
	// Machine is the shape of the machine the state was taken from.
	Machine Shape `json:"machine"`
	// Clonable marks a state written by Capture (capture.go): it may be
	// restored many times, by machines with disks of their own (over
	// frozen copies of the captured ones) and MACs of their own, which
	// OpenState then does not compare.
	Clonable bool `json:"clonable,omitempty"`
}

// StateFile is one file of a state directory.
type StateFile struct {
	Name  string   `json:"name"`
	Holds []string `json:"holds"`
	Size  int64    `json:"size"`
}

// File returns the name of the file that holds what (HoldsMemory,
// HoldsDevices), and whether there is one.
func (m Manifest) File(what string) (string, bool) {
	for _, f := range m.Files {
		if slices.Contains(f.Holds, what) {
			return f.Name, true
		}
	}
	return "", false
}

// Shape is what a saved machine must be restored as: the parts of its
// Spec that its memory and device state depend on, and the accelerator
// it ran under.
type Shape struct {
	VCPUs       int    `json:"vcpus"`
	MemoryBytes int64  `json:"memory_bytes"`
	Kernel      string `json:"kernel"`
	Initrd      string `json:"initrd,omitempty"`
	Disks       []Disk `json:"disks"`
	NIC         bool   `json:"nic"`
	MAC         string `json:"mac,omitempty"`
	// Accelerator is how the guest ran, in the backend's words ("kvm",
	// "tcg"): a state saved under one cannot be loaded under another.
	Accelerator string `json:"accelerator"`
}

// ShapeOf returns the shape of the machine spec describes, run under
// accelerator. Disk formats and the MAC are normalized ("" is "raw").
func ShapeOf(spec Spec, accelerator string) Shape {
	s := Shape{
		VCPUs: spec.VCPUs, MemoryBytes: spec.MemoryBytes, Kernel: spec.Kernel, Initrd: spec.Initrd,
		NIC: spec.TAP != "" || spec.UnlinkedNIC, MAC: strings.ToLower(spec.MAC), Accelerator: accelerator,
	}
	for _, d := range spec.Disks {
		if d.Format == "" {
			d.Format = "raw"
		}
		s.Disks = append(s.Disks, d)
	}
	return s
}

// Differences lists, one phrase each, how want differs from the saved
// shape s; none when a machine of shape want can load the state.
//
// Kernel and initrd are recorded but not compared: a restore does not load
// them into the guest, whose memory holds the kernel it booted, and a
// daemon upgraded while a VM was suspended resolves its image to new
// files (a rebuilt initramfs carries the new agent) that must not stop
// the VM from coming back. Disk paths are compared: the saved device
// state refers to those disks. The disks' contents cannot be checked.
func (s Shape) Differences(want Shape) []string {
	var diffs []string
	differ := func(what string, saved, asked any) {
		diffs = append(diffs, fmt.Sprintf("%s: saved %v, asked %v", what, saved, asked))
	}
	if s.VCPUs != want.VCPUs {
		differ("vcpus", s.VCPUs, want.VCPUs)
	}
	if s.MemoryBytes != want.MemoryBytes {
		differ("memory bytes", s.MemoryBytes, want.MemoryBytes)
	}
	if s.Accelerator != want.Accelerator {
		differ("accelerator", s.Accelerator, want.Accelerator)
	}
	if s.NIC != want.NIC {
		differ("network card", yesNo(s.NIC), yesNo(want.NIC))
	} else if s.MAC != want.MAC {
		differ("mac", s.MAC, want.MAC)
	}
	if len(s.Disks) != len(want.Disks) {
		differ("disks", len(s.Disks), len(want.Disks))
		return diffs
	}
	for i, d := range s.Disks {
		w := want.Disks[i]
		if d.Path != w.Path {
			differ(fmt.Sprintf("disk %d", i), d.Path, w.Path)
		}
		if d.Format != w.Format {
			differ(fmt.Sprintf("disk %d format", i), d.Format, w.Format)
		}
		if d.ReadOnly != w.ReadOnly {
			differ(fmt.Sprintf("disk %d read-only", i), d.ReadOnly, w.ReadOnly)
		}
	}
	return diffs
}

// CloneOf returns want with what a clone of the saved shape s may have
// of its own taken from s: its disks' paths and formats (a clone's disk
// is over a frozen copy of the saved one) and its MAC. The number of
// disks and whether they are read-only must still match.
func (s Shape) CloneOf(want Shape) Shape {
	want.MAC = s.MAC
	want.Disks = append([]Disk(nil), want.Disks...)
	for i := range want.Disks {
		if i < len(s.Disks) {
			want.Disks[i].Path, want.Disks[i].Format = s.Disks[i].Path, s.Disks[i].Format
		}
	}
	return want
}

func yesNo(b bool) string {
	if b {
		return "one"
	}
	return "none"
}

// OpenState reads the manifest of the state directory dir and checks it:
// written by backend in format, within a manifest version this package
// reads, its files present with their recorded sizes, and taken from a
// machine of shape want. The errors are classed as Backend.Start
// documents: api.ErrNotFound for a missing dir, api.ErrInvalid for one
// that is not a whole state directory, api.ErrConflict for a state this
// machine cannot load, naming every difference.
func OpenState(dir, backend, format string, want Shape) (Manifest, error) {
	man, err := ReadManifest(dir)
	if err != nil {
		return man, err
	}
	var diffs []string
	if man.Version > StateVersion {
		diffs = append(diffs, fmt.Sprintf("manifest version %d is newer than this daemon's %d", man.Version, StateVersion))
	}
	if man.Backend != backend {
		diffs = append(diffs, fmt.Sprintf("saved by backend %q, restoring with %q", man.Backend, backend))
	} else if man.Format != format {
		diffs = append(diffs, fmt.Sprintf("format %q, %s reads %q", man.Format, backend, format))
	}
	if man.Clonable {
		want = man.Machine.CloneOf(want)
	}
	diffs = append(diffs, man.Machine.Differences(want)...)
	if len(diffs) > 0 {
		return man, fmt.Errorf("%w: state %s cannot be restored on this machine: %s", api.ErrConflict, dir, strings.Join(diffs, "; "))
	}
	for _, f := range man.Files {
		fi, err := os.Stat(filepath.Join(dir, f.Name))
		switch {
		case err != nil:
			return man, fmt.Errorf("%w: state %s is damaged: %w", api.ErrInvalid, dir, err)
		case !fi.Mode().IsRegular() || fi.Size() != f.Size:
			return man, fmt.Errorf("%w: state %s is damaged: %s is %d bytes, the manifest says %d", api.ErrInvalid, dir, f.Name, fi.Size(), f.Size)
		}
	}
	return man, nil
}

// ReadManifest reads the manifest of the state directory dir, classed as
// OpenState says, without checking it against a machine.
func ReadManifest(dir string) (Manifest, error) {
	var man Manifest
	fi, err := os.Stat(dir)
	if errors.Is(err, os.ErrNotExist) {
		return man, fmt.Errorf("state directory %s: %w", dir, api.ErrNotFound)
	}
	if err != nil {
		return man, fmt.Errorf("state directory: %w", err)
	}
	if !fi.IsDir() {
		return man, fmt.Errorf("%w: state %s is not a directory", api.ErrInvalid, dir)
	}
	b, err := os.ReadFile(filepath.Join(dir, ManifestName))
	if err != nil {
		return man, fmt.Errorf("%w: %s is not a state directory: %w", api.ErrInvalid, dir, err)
	}
	if err := json.Unmarshal(b, &man); err != nil {
		return man, fmt.Errorf("%w: state %s: bad %s: %w", api.ErrInvalid, dir, ManifestName, err)
	}
	if man.Version < 1 || man.Backend == "" || len(man.Files) == 0 {
		return man, fmt.Errorf("%w: state %s: %s names no version, backend or files", api.ErrInvalid, dir, ManifestName)
	}
	for _, f := range man.Files {
		if f.Name == "" || f.Name == ManifestName || f.Name != filepath.Base(f.Name) || strings.HasPrefix(f.Name, ".") {
			return man, fmt.Errorf("%w: state %s: %s names a file %q outside the directory", api.ErrInvalid, dir, ManifestName, f.Name)
		}
	}
	return man, nil
}

// StateWriter writes a state directory: files go into a temporary
// directory beside its path, and Commit moves them into place.
type StateWriter struct {
	path, tmp string
}

// CreateState begins the state directory path (absolute), creating its
// temporary directory. The caller writes its files with Path, then calls
// Commit, or Abort when the save fails.
func CreateState(path string) (*StateWriter, error) {
	if !filepath.IsAbs(path) {
		return nil, fmt.Errorf("%w: state directory %q is not an absolute path", api.ErrInvalid, path)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(path), partialPrefix(path))
	if err != nil {
		return nil, fmt.Errorf("create state directory: %w", err)
	}
	return &StateWriter{path: path, tmp: tmp}, nil
}

// Path returns where the file name of the state is written.
func (w *StateWriter) Path(name string) string { return filepath.Join(w.tmp, name) }

// Commit completes the state: it records each file's size in man (man
// lists the files written; Version and, when zero, CreatedAt are set),
// writes the manifest, makes everything durable and moves the directory
// to its path, replacing in one step a state that was there.
func (w *StateWriter) Commit(man Manifest) error {
	man.Version = StateVersion
	if man.CreatedAt.IsZero() {
		man.CreatedAt = time.Now().UTC()
	}
	for i, f := range man.Files {
		size, err := syncFile(w.Path(f.Name))
		if err != nil {
			return fmt.Errorf("state file %s: %w", f.Name, err)
		}
		man.Files[i].Size = size
	}
	b, err := json.MarshalIndent(man, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(w.Path(ManifestName), append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("write state manifest: %w", err)
	}
	if _, err := syncFile(w.Path(ManifestName)); err != nil {
		return fmt.Errorf("write state manifest: %w", err)
	}
	if err := syncDir(w.tmp); err != nil {
		return err
	}
	replaced, err := moveInto(w.tmp, w.path)
	if err != nil {
		return fmt.Errorf("move state directory into place: %w", err)
	}
	if err := syncDir(filepath.Dir(w.path)); err != nil {
		return err
	}
	if replaced {
		os.RemoveAll(w.tmp) // now the state it replaced
	}
	return nil
}

// Abort removes what was written.
func (w *StateWriter) Abort() error { return os.RemoveAll(w.tmp) }

// RemoveState removes the state at path (a directory, or a file an older
// daemon wrote), and any partial one a save cut short left beside it.
func RemoveState(path string) error {
	errs := []error{os.RemoveAll(path)}
	partial, _ := filepath.Glob(filepath.Join(filepath.Dir(path), globEscape(partialPrefix(path))+"*"))
	for _, p := range partial {
		errs = append(errs, os.RemoveAll(p))
	}
	return errors.Join(errs...)
}

func partialPrefix(path string) string { return "." + filepath.Base(path) + ".partial-" }

func globEscape(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`, `[`, `\[`)
	return r.Replace(s)
}

// syncFile flushes a file to disk and returns its size.
func syncFile(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if !fi.Mode().IsRegular() {
		return 0, fmt.Errorf("%s is not a regular file", path)
	}
	return fi.Size(), f.Sync()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
