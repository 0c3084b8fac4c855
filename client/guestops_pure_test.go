package client

import (
	"archive/tar"
	"bytes"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openslicer/openslicer/api"
)

func TestParseForwardSpec(t *testing.T) {
	for _, tc := range []struct {
		spec string
		want ForwardSpec
	}{
		{"127.0.0.1:9000", ForwardSpec{"tcp", "127.0.0.1:9000", "127.0.0.1:9000"}},
		{"9001:127.0.0.1:9000", ForwardSpec{"tcp", "0.0.0.0:9001", "127.0.0.1:9000"}},
		{"0:127.0.0.1:9000", ForwardSpec{"tcp", "0.0.0.0:0", "127.0.0.1:9000"}},
		{"0.0.0.0:9000:127.0.0.1:9000", ForwardSpec{"tcp", "0.0.0.0:9000", "127.0.0.1:9000"}},
		{"127.0.0.1:9000:/var/run/docker.sock", ForwardSpec{"tcp", "127.0.0.1:9000", "unix:/var/run/docker.sock"}},
		{"9000:/var/run/docker.sock", ForwardSpec{"tcp", "0.0.0.0:9000", "unix:/var/run/docker.sock"}},
		{"/tmp/d.sock:/var/run/docker.sock", ForwardSpec{"unix", "/tmp/d.sock", "unix:/var/run/docker.sock"}},
	} {
		got, err := ParseForwardSpec(tc.spec)
		if err != nil {
			t.Errorf("ParseForwardSpec(%q): %v", tc.spec, err)
			continue
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("ParseForwardSpec(%q) (-want +got):\n%s", tc.spec, diff)
		}
	}
	for _, bad := range []string{"", "9000", "x:y:z:w:v", "abc:127.0.0.1:80", "127.0.0.1:0", "/tmp/a.sock:9000", "70000:127.0.0.1:80"} {
		if _, err := ParseForwardSpec(bad); !errors.Is(err, api.ErrInvalid) {
			t.Errorf("ParseForwardSpec(%q) = %v, want ErrInvalid", bad, err)
		}
	}
}

func TestShellFrames(t *testing.T) {
	for _, tc := range []struct {
		typ     byte
		payload []byte
	}{
		{api.ShellData, []byte("ls\r")},
		{api.ShellWindowSize, WindowSizePayload(80, 24)},
		{api.ShellHeartbeat, nil},
		{api.ShellSessionClose, []byte{}},
	} {
		b := EncodeShellFrame(tc.typ, tc.payload)
		typ, p, err := DecodeShellFrame(b)
		if err != nil || typ != tc.typ || !bytes.Equal(p, tc.payload) {
			t.Errorf("round trip of %d %q: got %d %q %v", tc.typ, tc.payload, typ, p, err)
		}
	}
	if got, want := WindowSizePayload(80, 24), []byte{0, 0, 0, 80, 0, 0, 0, 24}; !bytes.Equal(got, want) {
		t.Errorf("WindowSizePayload = %v, want %v", got, want)
	}
	if got, want := EncodeShellFrame(api.ShellData, []byte("hi")), []byte{1, 0, 0, 0, 2, 'h', 'i'}; !bytes.Equal(got, want) {
		t.Errorf("EncodeShellFrame = %v, want %v", got, want)
	}
	for _, bad := range [][]byte{{1, 0, 0}, {1, 0, 0, 0, 5, 'a'}} {
		if _, _, err := DecodeShellFrame(bad); err == nil {
			t.Errorf("DecodeShellFrame(%v) accepted a short frame", bad)
		}
	}
}

func TestParseCopyMeta(t *testing.T) {
	h := func(kv ...string) http.Header {
		out := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			out.Set(kv[i], kv[i+1])
		}
		return out
	}
	for _, tc := range []struct {
		name     string
		h        http.Header
		contents bool
		want     copyMeta
		wantErr  bool
	}{
		{"file", h(api.HeaderSourceType, "file", api.HeaderSourceNameBase64, "YSBiLnR4dA", api.HeaderFileMode, "0755"), false, copyMeta{"file", "a b.txt", "0755"}, false},
		{"no metadata", h(), false, copyMeta{}, true},
		{"raw name only", h(api.HeaderSourceType, "file", api.HeaderSourceName, "a"), false, copyMeta{}, true},
		{"empty name for contents", h(api.HeaderSourceType, "directory", api.HeaderSourceNameBase64, ""), true, copyMeta{sourceType: "directory"}, false},
		{"empty name otherwise", h(api.HeaderSourceType, "directory", api.HeaderSourceNameBase64, ""), false, copyMeta{}, true},
		{"name with slash", h(api.HeaderSourceType, "file", api.HeaderSourceNameBase64, "Li4vZXRj"), false, copyMeta{}, true}, // "../etc"
		{"dot dot", h(api.HeaderSourceType, "file", api.HeaderSourceNameBase64, "Li4"), false, copyMeta{}, true},
		{"bad type", h(api.HeaderSourceType, "fifo", api.HeaderSourceNameBase64, "YQ"), false, copyMeta{}, true},
	} {
		got, err := parseCopyMeta(tc.h, tc.contents)
		if (err != nil) != tc.wantErr {
			t.Errorf("%s: err = %v, want error %t", tc.name, err, tc.wantErr)
			continue
		}
		if err == nil && got != tc.want {
			t.Errorf("%s: got %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

func TestLocalTarget(t *testing.T) {
	file := copyMeta{sourceType: api.CopySourceFile, name: "a.txt"}
	dir := copyMeta{sourceType: api.CopySourceDirectory, name: "proj"}
	for _, tc := range []struct {
		name          string
		dst           string
		exists, isDir bool
		m             copyMeta
		contents      bool
		want          string
		wantErr       bool
	}{
		{"file into dir", "/out", true, true, file, false, "/out/a.txt", false},
		{"file as new name", "/out/b.txt", false, false, file, false, "/out/b.txt", false},
		{"file over file", "/out/b.txt", true, false, file, false, "/out/b.txt", false},
		{"file into missing dir/", "/out/", false, false, file, false, "", true},
		{"dir into existing dir", "/out", true, true, dir, false, "/out/proj", false},
		{"dir contents", "/out", true, true, dir, true, "/out", false},
		{"dir to new path", "/new", false, false, dir, false, "/new", false},
		{"dir onto file", "/f", true, false, dir, false, "", true},
	} {
		got, err := localTarget(tc.dst, tc.exists, tc.isDir, tc.m, tc.contents)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("%s: got %q, %v; want %q (error %t)", tc.name, got, err, tc.want, tc.wantErr)
		}
	}
}

// TestExtractHostileTar sends entries that try to leave the destination:
// none may write outside it.
func TestExtractHostileTar(t *testing.T) {
	for _, tc := range []struct {
		name    string
		entries []tar.Header
	}{
		{"dot dot", []tar.Header{{Name: "../evil", Typeflag: tar.TypeReg, Mode: 0o644}}},
		{"absolute", []tar.Header{{Name: "/tmp/evil", Typeflag: tar.TypeReg, Mode: 0o644}}},
		{"nested dot dot", []tar.Header{{Name: "a/../../evil", Typeflag: tar.TypeReg, Mode: 0o644}}},
	} {
		parent := t.TempDir()
		dst := filepath.Join(parent, "dst")
		if err := os.Mkdir(dst, 0o755); err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, h := range tc.entries {
			h.Size = 4
			if err := tw.WriteHeader(&h); err != nil {
				t.Fatal(err)
			}
			_, _ = tw.Write([]byte("evil"))
		}
		tw.Close()
		if err := extractTar(&buf, dst, nil, -1, -1); err == nil {
			t.Errorf("%s: extractTar accepted the archive", tc.name)
		}
		if _, err := os.Stat(filepath.Join(parent, "evil")); err == nil {
			t.Errorf("%s: a file was written outside the destination", tc.name)
		}
	}

	// A symlink planted in the destination must not be followed out.
	parent := t.TempDir()
	dst, outside := filepath.Join(parent, "dst"), filepath.Join(parent, "outside")
	for _, d := range []string{dst, outside} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(outside, filepath.Join(dst, "link")); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	_ = tw.WriteHeader(&tar.Header{Name: "link/evil", Typeflag: tar.TypeReg, Mode: 0o644, Size: 4})
	_, _ = tw.Write([]byte("evil"))
	tw.Close()
	if err := extractTar(&buf, dst, nil, -1, -1); err == nil {
		t.Error("extractTar followed a symlink without error")
	}
	if _, err := os.Stat(filepath.Join(outside, "evil")); err == nil {
		t.Error("a file was written through a symlink outside the destination")
	}
}
