package hypervisor

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/openslicer/openslicer/api"
)

func testSpec() Spec {
	return Spec{
		Name: "sbox-1", VCPUs: 2, MemoryBytes: 512 << 20, Kernel: "/k/vmlinuz", Initrd: "/k/initrd",
		Disks: []Disk{{Path: "/d/sbox-1.img"}}, RunDir: "/run/sbox-1", TAP: "tap0", MAC: "52:54:00:AB:CD:EF",
	}
}

func TestShapeOf(t *testing.T) {
	got := ShapeOf(testSpec(), "tcg")
	want := Shape{
		VCPUs: 2, MemoryBytes: 512 << 20, Kernel: "/k/vmlinuz", Initrd: "/k/initrd",
		Disks: []Disk{{Path: "/d/sbox-1.img", Format: "raw"}}, NIC: true, MAC: "52:54:00:ab:cd:ef", Accelerator: "tcg",
	}
	if !shapeEqual(got, want) {
		t.Errorf("ShapeOf = %+v, want %+v", got, want)
	}
}

func shapeEqual(a, b Shape) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

func TestShapeDifferences(t *testing.T) {
	saved := ShapeOf(testSpec(), "kvm")
	tests := []struct {
		name string
		edit func(s *Spec) string // returns the accelerator asked
		want []string
	}{
		{"same", func(s *Spec) string { return "kvm" }, nil},
		{"format spelled out", func(s *Spec) string { s.Disks[0].Format = "raw"; return "kvm" }, nil},
		{"other kernel and initrd", func(s *Spec) string { s.Kernel, s.Initrd = "/k2/vmlinuz", "/k2/initrd"; return "kvm" }, nil},
		{"other tap name", func(s *Spec) string { s.TAP = "tap9"; return "kvm" }, nil},
		{"memory", func(s *Spec) string { s.MemoryBytes *= 2; return "kvm" }, []string{"memory bytes: saved 536870912, asked 1073741824"}},
		{"vcpus and accelerator", func(s *Spec) string { s.VCPUs = 1; return "tcg" }, []string{"vcpus: saved 2, asked 1", "accelerator: saved kvm, asked tcg"}},
		{"no nic", func(s *Spec) string { s.TAP, s.MAC = "", ""; return "kvm" }, []string{"network card: saved one, asked none"}},
		{"mac", func(s *Spec) string { s.MAC = "52:54:00:00:00:01"; return "kvm" }, []string{"mac: saved 52:54:00:ab:cd:ef, asked 52:54:00:00:00:01"}},
		{"disk count", func(s *Spec) string { s.Disks = append(s.Disks, Disk{Path: "/d/x"}); return "kvm" }, []string{"disks: saved 1, asked 2"}},
		{"disk path, format, read-only", func(s *Spec) string {
			s.Disks[0] = Disk{Path: "/d/other.img", Format: "qcow2", ReadOnly: true}
			return "kvm"
		}, []string{"disk 0: saved /d/sbox-1.img, asked /d/other.img", "disk 0 format: saved raw, asked qcow2", "disk 0 read-only: saved false, asked true"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := testSpec()
			spec.Disks = slices.Clone(spec.Disks)
			accel := tt.edit(&spec)
			if got := saved.Differences(ShapeOf(spec, accel)); !slices.Equal(got, tt.want) {
				t.Errorf("Differences = %q, want %q", got, tt.want)
			}
		})
	}
}

// writeState commits a state directory at dir with one file "mem" holding
// content.
func writeState(t *testing.T, dir, backend, content string) Manifest {
	t.Helper()
	w, err := CreateState(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(w.Path("mem"), []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	man := Manifest{Backend: backend, Format: "test-v1", Machine: ShapeOf(testSpec(), "tcg"),
		Files: []StateFile{{Name: "mem", Holds: []string{HoldsMemory, HoldsDevices}}}}
	if err := w.Commit(man); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	return man
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestStateWriteOpen(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "sbox-1.state")
	writeState(t, dir, "test", "memory and devices")
	if got := dirNames(t, parent); !slices.Equal(got, []string{"sbox-1.state"}) {
		t.Errorf("parent holds %v, want only the state directory", got)
	}
	if got := dirNames(t, dir); !slices.Equal(got, []string{ManifestName, "mem"}) {
		t.Errorf("state directory holds %v", got)
	}
	man, err := OpenState(dir, "test", "test-v1", ShapeOf(testSpec(), "tcg"))
	if err != nil {
		t.Fatalf("OpenState: %v", err)
	}
	if man.Version != StateVersion || man.CreatedAt.IsZero() || man.Files[0].Size != int64(len("memory and devices")) {
		t.Errorf("manifest = %+v", man)
	}
	for _, what := range []string{HoldsMemory, HoldsDevices} {
		if name, ok := man.File(what); !ok || name != "mem" {
			t.Errorf("File(%q) = %q, %v", what, name, ok)
		}
	}
}

// A state replaces the one at its path in one step, a directory or the
// single file an older daemon wrote.
func TestStateReplaces(t *testing.T) {
	for _, old := range []string{"dir", "file"} {
		t.Run(old, func(t *testing.T) {
			parent := t.TempDir()
			dir := filepath.Join(parent, "sbox-1.state")
			if old == "dir" {
				writeState(t, dir, "test", "old")
			} else if err := os.WriteFile(dir, []byte("old migration stream"), 0o600); err != nil {
				t.Fatal(err)
			}
			writeState(t, dir, "test", "new")
			if b, err := os.ReadFile(filepath.Join(dir, "mem")); err != nil || string(b) != "new" {
				t.Errorf("mem = %q, %v; want the new state", b, err)
			}
			if got := dirNames(t, parent); !slices.Equal(got, []string{"sbox-1.state"}) {
				t.Errorf("parent holds %v, want only the state directory", got)
			}
		})
	}
}

func TestStateAbortAndRemove(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "sbox-1.state")
	w, err := CreateState(dir)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(w.Path("mem"), []byte("x"), 0o600)
	if err := w.Abort(); err != nil {
		t.Fatal(err)
	}
	if got := dirNames(t, parent); len(got) != 0 {
		t.Errorf("Abort left %v", got)
	}

	writeState(t, dir, "test", "state")
	if _, err := CreateState(dir); err != nil { // a save cut short by a crash
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(parent, "sbox-10.state"), nil, 0o600) // another VM's
	if err := RemoveState(dir); err != nil {
		t.Fatalf("RemoveState: %v", err)
	}
	if got := dirNames(t, parent); !slices.Equal(got, []string{"sbox-10.state"}) {
		t.Errorf("after RemoveState the parent holds %v, want only the other VM's state", got)
	}
	if err := RemoveState(dir); err != nil {
		t.Errorf("RemoveState of nothing: %v", err)
	}
}

func TestOpenStateErrors(t *testing.T) {
	parent := t.TempDir()
	good := filepath.Join(parent, "good.state")
	writeState(t, good, "test", "state")
	want := ShapeOf(testSpec(), "tcg")

	notDir := filepath.Join(parent, "legacy.state")
	os.WriteFile(notDir, []byte("a migration stream"), 0o600)
	empty := filepath.Join(parent, "empty.state")
	os.Mkdir(empty, 0o700)
	badJSON := filepath.Join(parent, "bad.state")
	os.Mkdir(badJSON, 0o700)
	os.WriteFile(filepath.Join(badJSON, ManifestName), []byte("{"), 0o600)
	escape := filepath.Join(parent, "escape.state")
	os.Mkdir(escape, 0o700)
	os.WriteFile(filepath.Join(escape, ManifestName), []byte(`{"version":1,"backend":"test","files":[{"name":"../good.state/mem"}]}`), 0o600)
	newer := filepath.Join(parent, "newer.state")
	os.Mkdir(newer, 0o700)
	os.WriteFile(filepath.Join(newer, ManifestName), []byte(`{"version":99,"backend":"test","format":"test-v1","files":[{"name":"m"}]}`), 0o600)
	truncated := filepath.Join(parent, "truncated.state")
	writeState(t, truncated, "test", "state")
	os.Truncate(filepath.Join(truncated, "mem"), 2)
	missing := filepath.Join(parent, "missing-file.state")
	writeState(t, missing, "test", "state")
	os.Remove(filepath.Join(missing, "mem"))

	bigger := want
	bigger.MemoryBytes *= 2
	tests := []struct {
		name, dir, backend, format string
		want                       Shape
		class                      error
		says                       string
	}{
		{"missing", filepath.Join(parent, "nothing"), "test", "test-v1", want, api.ErrNotFound, "nothing"},
		{"a file", notDir, "test", "test-v1", want, api.ErrInvalid, "not a directory"},
		{"no manifest", empty, "test", "test-v1", want, api.ErrInvalid, "not a state directory"},
		{"bad manifest", badJSON, "test", "test-v1", want, api.ErrInvalid, "bad manifest.json"},
		{"file outside", escape, "test", "test-v1", want, api.ErrInvalid, "outside the directory"},
		{"newer version", newer, "test", "test-v1", want, api.ErrConflict, "newer"},
		{"other backend", good, "other", "test-v1", want, api.ErrConflict, `saved by backend "test", restoring with "other"`},
		{"other format", good, "test", "test-v2", want, api.ErrConflict, `format "test-v1"`},
		{"other shape", good, "test", "test-v1", bigger, api.ErrConflict, "memory bytes: saved 536870912, asked 1073741824"},
		{"truncated file", truncated, "test", "test-v1", want, api.ErrInvalid, "mem is 2 bytes"},
		{"missing file", missing, "test", "test-v1", want, api.ErrInvalid, "damaged"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := OpenState(tt.dir, tt.backend, tt.format, tt.want)
			if !errors.Is(err, tt.class) || !strings.Contains(err.Error(), tt.says) {
				t.Errorf("OpenState error = %v, want %v saying %q", err, tt.class, tt.says)
			}
		})
	}
}

func TestCreateStateRelative(t *testing.T) {
	if _, err := CreateState("sbox-1.state"); !errors.Is(err, api.ErrInvalid) {
		t.Errorf("CreateState(relative) error = %v, want api.ErrInvalid", err)
	}
}

func TestSpecValidate(t *testing.T) {
	if err := testSpec().Validate(); err != nil {
		t.Fatalf("Validate(good spec) = %v", err)
	}
	bad := Spec{Name: "x", RunDir: "run", Disks: []Disk{{}}, RestoreFrom: "state"}
	err := bad.Validate()
	if !errors.Is(err, api.ErrInvalid) {
		t.Fatalf("Validate(bad spec) = %v, want api.ErrInvalid", err)
	}
	for _, want := range []string{"vcpus", "memory", "kernel", "run dir", "disk 0", "state directory"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Validate error %q does not name %q", err, want)
		}
	}
}

// TestOpenStateClonable: a clonable state opens for a machine with other
// disk paths, formats and MAC, and still refuses another size or number
// of disks; a state that is not clonable refuses other disk paths.
func TestOpenStateClonable(t *testing.T) {
	saved := Shape{VCPUs: 1, MemoryBytes: 256 << 20, Accelerator: "tcg", NIC: true, MAC: "52:54:00:00:00:01",
		Disks: []Disk{{Path: "/t/disk.qcow2", Format: "qcow2"}}}
	clone := saved
	clone.MAC = "52:54:00:00:00:02"
	clone.Disks = []Disk{{Path: "/vms/a-1.img", Format: "raw"}}
	bigger := clone
	bigger.MemoryBytes *= 2
	twoDisks := clone
	twoDisks.Disks = append(twoDisks.Disks, Disk{Path: "/x", Format: "raw"})
	for _, tt := range []struct {
		name     string
		clonable bool
		want     Shape
		ok       bool
	}{
		{"clone of a clonable state", true, clone, true},
		{"clone of a suspended state", false, clone, false},
		{"bigger clone", true, bigger, false},
		{"clone with two disks", true, twoDisks, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "state")
			w, err := CreateState(dir)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(w.Path("s"), []byte("x"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := w.Commit(Manifest{Backend: "b", Format: "f", Machine: saved, Clonable: tt.clonable,
				Files: []StateFile{{Name: "s", Holds: []string{HoldsMemory, HoldsDevices}}}}); err != nil {
				t.Fatal(err)
			}
			_, err = OpenState(dir, "b", "f", tt.want)
			if (err == nil) != tt.ok {
				t.Errorf("OpenState error = %v, want ok %v", err, tt.ok)
			}
		})
	}
}
