package guest

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openslicer/openslicer/api"
)

const zeroSHA = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" // of no bytes

func TestSessionDir(t *testing.T) {
	tests := []struct {
		manifest, want string
	}{
		{"/home/u/.slicer-upload-0123abcd/manifest.json", "/home/u/.slicer-upload-0123abcd"},
		{"~/.slicer-upload-ff/manifest.json", "~/.slicer-upload-ff"},
		{"/home/u/manifest.json", ""},
		{"/home/u/.slicer-upload-/manifest.json", ""},
		{"/home/u/.slicer-upload-xyz/manifest.json", ""},
		{"/.slicer-upload-ab/../manifest.json", ""},
		{"/", ""},
	}
	for _, tt := range tests {
		got, err := sessionDir(tt.manifest)
		switch {
		case tt.want == "" && !errors.Is(err, api.ErrInvalid):
			t.Errorf("sessionDir(%q) = %q, %v; want refused", tt.manifest, got, err)
		case tt.want != "" && (err != nil || got != tt.want):
			t.Errorf("sessionDir(%q) = %q, %v; want %q", tt.manifest, got, err, tt.want)
		}
	}
	if got := chunkPath("/s", 12); got != "/s/chunks/000012.chunk" {
		t.Errorf("chunkPath = %q", got)
	}
}

func TestManifestCheck(t *testing.T) {
	good := func() copyManifest {
		return copyManifest{
			Version: 2, Mode: "binary", Destination: "/d", Size: 10,
			Chunks: []copyChunk{{0, 4, zeroSHA}, {1, 6, strings.ToUpper(zeroSHA)}},
		}
	}
	tests := []struct {
		name   string
		change func(*copyManifest)
		errHas string // empty: valid
	}{
		{"good", func(*copyManifest) {}, ""},
		{"version 1", func(m *copyManifest) { m.Version = 1 }, ""},
		{"no chunks", func(m *copyManifest) { m.Chunks, m.Size = nil, 0 }, ""},
		{"version 3", func(m *copyManifest) { m.Version = 3 }, "version"},
		{"no destination", func(m *copyManifest) { m.Destination = "" }, "destination"},
		{"out of order", func(m *copyManifest) { m.Chunks[0].Index, m.Chunks[1].Index = 1, 0 }, "index"},
		{"gap", func(m *copyManifest) { m.Chunks[1].Index = 2 }, "index"},
		{"bad digest", func(m *copyManifest) { m.Chunks[1].SHA256 = "xyz" }, "SHA-256"},
		{"negative size", func(m *copyManifest) { m.Chunks[0].Size = -4; m.Size = 2 }, "size"},
		{"sizes disagree", func(m *copyManifest) { m.Size = 11 }, "add up"},
	}
	for _, tt := range tests {
		m := good()
		tt.change(&m)
		err := m.check()
		switch {
		case tt.errHas == "" && err != nil:
			t.Errorf("%s: check: %v", tt.name, err)
		case tt.errHas != "" && (!errors.Is(err, api.ErrInvalid) || !strings.Contains(err.Error(), tt.errHas)):
			t.Errorf("%s: check error = %v, want invalid containing %q", tt.name, err, tt.errHas)
		}
	}
}

func TestManifestUpload(t *testing.T) {
	tests := []struct {
		name     string
		m        copyManifest
		uid, gid *uint32
		want     upload
		err      bool
	}{
		{
			name: "v1 binary, flags win",
			m: copyManifest{Mode: "binary", Destination: "~/x/", UID: 5, GID: 6, Permissions: "0755", Size: 9,
				CopySemantics: "cp-v1", SourceName: "f.bin", SourceType: "file"},
			uid: u32(0), gid: u32(0),
			want: upload{v1: true, rawPath: "~/x/", sourceName: "f.bin", uid: u32(0), gid: u32(0), perm: modePtr(0o755), size: 9},
		},
		{
			name: "legacy binary, manifest owner",
			m:    copyManifest{Mode: "binary", Destination: "/x", UID: 5, GID: 6, Size: 9},
			want: upload{rawPath: "/x", uid: u32(5), gid: u32(6), size: 9},
		},
		{
			name: "tar contents, default user",
			m: copyManifest{Mode: "tar", Destination: "/srv", UID: 4294967295, GID: 4294967295, Size: 2048, UnpackedSize: 100,
				CopySemantics: "cp-v1", SourceType: "directory", CopyContents: true},
			want: upload{tar: true, v1: true, rawPath: "/srv", contents: true, size: 100},
		},
		{
			name: "tar without unpacked size",
			m:    copyManifest{Mode: "tar", Destination: "/srv", Size: 2048},
			want: upload{tar: true, rawPath: "/srv", uid: u32(0), gid: u32(0), size: -1},
		},
		{name: "bad mode", m: copyManifest{Mode: "zip", Destination: "/x"}, err: true},
		{name: "recursive", m: copyManifest{Mode: "cp-v1-recursive", Destination: "/x"}, err: true},
		{name: "bad semantics", m: copyManifest{Mode: "binary", Destination: "/x", CopySemantics: "v9"}, err: true},
		{name: "bad name", m: copyManifest{Mode: "binary", Destination: "/x", SourceName: "../x"}, err: true},
		{name: "bad type", m: copyManifest{Mode: "tar", Destination: "/x", SourceType: "file"}, err: true},
		{name: "bad permissions", m: copyManifest{Mode: "binary", Destination: "/x", Permissions: "9"}, err: true},
	}
	for _, tt := range tests {
		got, err := tt.m.upload(tt.uid, tt.gid)
		if tt.err {
			if !errors.Is(err, api.ErrInvalid) {
				t.Errorf("%s: upload error = %v, want invalid", tt.name, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: upload: %v", tt.name, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(upload{})); diff != "" {
			t.Errorf("%s: upload (-want +got):\n%s", tt.name, diff)
		}
	}
}
