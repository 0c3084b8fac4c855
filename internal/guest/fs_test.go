package guest

import (
	"errors"
	"io/fs"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/openslicer/openslicer/api"
)

func TestFSType(t *testing.T) {
	tests := []struct {
		mode fs.FileMode
		want string
	}{
		{0o644, fsTypeFile},
		{fs.ModeDir | 0o755, fsTypeDirectory},
		{fs.ModeSymlink | 0o777, fsTypeSymlink},
		{fs.ModeNamedPipe | 0o600, fsTypeFile},
		{fs.ModeDevice | fs.ModeCharDevice | 0o666, fsTypeFile},
		{fs.ModeSocket | 0o755, fsTypeFile},
	}
	for _, tt := range tests {
		if got := fsType(tt.mode); got != tt.want {
			t.Errorf("fsType(%v) = %q, want %q", tt.mode, got, tt.want)
		}
	}
}

func TestFSModeString(t *testing.T) {
	tests := []struct {
		mode fs.FileMode
		want string
	}{
		{0o644, "0644"},
		{0, "0000"},
		{fs.ModeDir | 0o755, "0755"},
		{fs.ModeSetuid | 0o755, "4755"},
		{fs.ModeDir | fs.ModeSetgid | 0o775, "2775"},
		{fs.ModeDir | fs.ModeSticky | 0o777, "1777"},
		{fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky | 0o777, "7777"},
		{fs.ModeSymlink | 0o777, "0777"},
	}
	for _, tt := range tests {
		if got := fsModeString(tt.mode); got != tt.want {
			t.Errorf("fsModeString(%v) = %q, want %q", tt.mode, got, tt.want)
		}
	}
}

func TestFSInfo(t *testing.T) {
	mtime := time.Date(2026, 4, 12, 19, 33, 45, 0, time.FixedZone("x", 3600))
	got := fsInfo("a.txt", fakeFileInfo{size: 12, mode: 0o640, mtime: mtime})
	want := api.FSInfo{Name: "a.txt", Type: fsTypeFile, Size: 12, Mtime: mtime.UTC(), Mode: "0640"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("fsInfo (-want +got):\n%s", diff)
	}
}

// fakeFileInfo is an fs.FileInfo with the fields fsInfo reads.
type fakeFileInfo struct {
	size  int64
	mode  fs.FileMode
	mtime time.Time
}

func (f fakeFileInfo) Name() string       { return "fake" }
func (f fakeFileInfo) Size() int64        { return f.size }
func (f fakeFileInfo) Mode() fs.FileMode  { return f.mode }
func (f fakeFileInfo) ModTime() time.Time { return f.mtime }
func (f fakeFileInfo) IsDir() bool        { return f.mode.IsDir() }
func (f fakeFileInfo) Sys() any           { return nil }

func TestParseDirMode(t *testing.T) {
	tests := []struct {
		in      string
		want    uint32
		wantErr bool
	}{
		{"", 0o755, false},
		{"0755", 0o755, false},
		{"755", 0o755, false},
		{"0o700", 0o700, false},
		{"2775", 0o2775, false},
		{"07777", 0o7777, false},
		{"0", 0, false},
		{"17777", 0, true},
		{"0o", 0, true},
		{"rwx", 0, true},
		{"0888", 0, true},
		{"-1", 0, true},
	}
	for _, tt := range tests {
		got, err := parseDirMode(tt.in)
		if tt.wantErr {
			if !errors.Is(err, api.ErrInvalid) {
				t.Errorf("parseDirMode(%q) = %o, %v; want ErrInvalid", tt.in, got, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("parseDirMode(%q) = %o, %v; want %o", tt.in, got, err, tt.want)
		}
	}
}

func TestParseOptionalBool(t *testing.T) {
	tests := []struct {
		in      string
		want    bool
		wantErr bool
	}{
		{"", false, false},
		{"true", true, false},
		{"1", true, false},
		{"false", false, false},
		{"yes", false, true},
	}
	for _, tt := range tests {
		got, err := parseOptionalBool("recursive", tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("parseOptionalBool(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
		if err != nil && !errors.Is(err, api.ErrInvalid) {
			t.Errorf("parseOptionalBool(%q) error %v is not ErrInvalid", tt.in, err)
		}
	}
}
