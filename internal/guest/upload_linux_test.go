package guest

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// writeSession writes a chunked upload's session next to dest: data cut into
// chunks of chunkSize, and a manifest from m with the chunks filled in.
// It returns the manifest's path.
func writeSession(t *testing.T, parent string, data []byte, chunkSize int, m copyManifest) string {
	t.Helper()
	dir := filepath.Join(parent, ".slicer-upload-"+hex.EncodeToString([]byte("0123456789abcdef")))
	if err := os.MkdirAll(filepath.Join(dir, "chunks"), 0o700); err != nil {
		t.Fatal(err)
	}
	m.Version, m.Size = 2, int64(len(data))
	for i := 0; len(data) > 0 || (i == 0 && m.Size == 0); i++ {
		n := min(chunkSize, len(data))
		sum := sha256.Sum256(data[:n])
		if err := os.WriteFile(chunkPath(dir, i), data[:n], 0o600); err != nil {
			t.Fatal(err)
		}
		m.Chunks = append(m.Chunks, copyChunk{Index: i, Size: int64(n), SHA256: hex.EncodeToString(sum[:])})
		data = data[n:]
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "manifest.json")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// runUpload runs "slicer-agent upload args…" on a test server.
func runUpload(t *testing.T, s *Server, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errs bytes.Buffer
	code = s.runUpload(context.Background(), args, &out, &errs)
	return code, out.String(), errs.String()
}

// ownFlags is the --uid and --gid flags of the test's own user.
func ownFlags() []string {
	return []string{"--uid", strconv.Itoa(os.Getuid()), "--gid", strconv.Itoa(os.Getgid())}
}

func TestUploadCheck(t *testing.T) {
	code, out, _ := runUpload(t, newHarness(t).srv, "check")
	if code != 0 || strings.TrimSpace(out) != "chunked-copy-v2" {
		t.Errorf("upload check = %d %q, want 0 chunked-copy-v2", code, out)
	}
	code, _, errs := runUpload(t, newHarness(t).srv, "frobnicate")
	if code != 2 || !strings.Contains(errs, "frobnicate") {
		t.Errorf("upload frobnicate = %d %q, want 2 naming it", code, errs)
	}
}

func TestUploadFinaliseBinary(t *testing.T) {
	s := newHarness(t).srv
	dir := t.TempDir()
	data := make([]byte, 1<<20+123)
	rand.Read(data)
	mp := writeSession(t, dir, data, 300<<10, copyManifest{Mode: "binary", Destination: dir + "/", Permissions: "0640",
		CopySemantics: "cp-v1", SourceName: "big.bin", SourceType: "file"})

	code, _, errs := runUpload(t, s, append([]string{"finalise", "--manifest", mp}, ownFlags()...)...)
	if code != 0 {
		t.Fatalf("finalise = %d: %s", code, errs)
	}
	got, err := os.ReadFile(filepath.Join(dir, "big.bin"))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("big.bin: %d bytes, %v; want the %d uploaded", len(got), err, len(data))
	}
	if fi, _ := os.Stat(filepath.Join(dir, "big.bin")); fi.Mode() != 0o640 {
		t.Errorf("mode = %v, want 0640", fi.Mode())
	}
	if _, err := os.Stat(filepath.Dir(mp)); !os.IsNotExist(err) {
		t.Errorf("session directory still there after finalise: %v", err)
	}
}

func TestUploadFinaliseTar(t *testing.T) {
	s := newHarness(t).srv
	dir := t.TempDir()
	body := makeTar(t, tarFile{name: "sub/", typ: tar.TypeDir, mode: 0o755}, tarFile{name: "sub/a.txt", body: "aaa"},
		tarFile{name: "b.txt", body: "bb"})
	mp := writeSession(t, dir, body, 700, copyManifest{Mode: "tar", Destination: filepath.Join(dir, "out"), UnpackedSize: 5,
		CopySemantics: "cp-v1", SourceName: "proj", SourceType: "directory"})

	code, _, errs := runUpload(t, s, append([]string{"finalize", "--manifest", mp}, ownFlags()...)...)
	if code != 0 {
		t.Fatalf("finalise = %d: %s", code, errs)
	}
	for p, want := range map[string]string{"out/sub/a.txt": "aaa", "out/b.txt": "bb"} {
		if b, err := os.ReadFile(filepath.Join(dir, p)); err != nil || string(b) != want {
			t.Errorf("%s = %q, %v; want %q", p, b, err, want)
		}
	}
}

func TestUploadFinaliseRejectsBadChunks(t *testing.T) {
	tests := []struct {
		name   string
		damage func(session string)
		errHas string
	}{
		{"changed chunk", func(s string) { os.WriteFile(chunkPath(s, 1), bytes.Repeat([]byte("x"), 100), 0o600) }, "SHA-256"},
		{"short chunk", func(s string) { os.WriteFile(chunkPath(s, 0), []byte("abc"), 0o600) }, "bytes"},
		{"missing chunk", func(s string) { os.Remove(chunkPath(s, 2)) }, "chunk"},
		{"chunk is a symlink", func(s string) {
			os.Remove(chunkPath(s, 0))
			os.Symlink("/etc/hostname", chunkPath(s, 0))
		}, "chunk"},
		{"bad manifest", func(s string) { os.WriteFile(filepath.Join(s, "manifest.json"), []byte("{"), 0o600) }, "manifest"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newHarness(t).srv
			dir := t.TempDir()
			mp := writeSession(t, dir, bytes.Repeat([]byte("d"), 250), 100, copyManifest{Mode: "binary", Destination: filepath.Join(dir, "f")})
			tt.damage(filepath.Dir(mp))
			code, _, errs := runUpload(t, s, append([]string{"finalise", "--manifest", mp}, ownFlags()...)...)
			if code != 1 || !strings.Contains(errs, tt.errHas) {
				t.Errorf("finalise = %d %q, want 1 mentioning %q", code, errs, tt.errHas)
			}
			if _, err := os.Lstat(filepath.Join(dir, "f")); err == nil {
				t.Errorf("the destination was written from bad chunks")
			}
			if _, err := os.Stat(filepath.Dir(mp)); err != nil {
				t.Errorf("a failed finalise removed the session (left for abort): %v", err)
			}
			// The SDK aborts after a failed finalise.
			if code, _, errs := runUpload(t, s, append([]string{"abort", "--manifest", mp}, ownFlags()...)...); code != 0 {
				t.Errorf("abort = %d: %s", code, errs)
			}
			if _, err := os.Stat(filepath.Dir(mp)); !os.IsNotExist(err) {
				t.Errorf("session still there after abort: %v", err)
			}
		})
	}
}

func TestUploadAbortRefusesOtherDirectories(t *testing.T) {
	s := newHarness(t).srv
	dir := t.TempDir()
	keep := filepath.Join(dir, "precious")
	os.MkdirAll(keep, 0o755)
	for _, mp := range []string{filepath.Join(keep, "manifest.json"), filepath.Join(dir, ".slicer-upload-zz", "manifest.json")} {
		code, _, errs := runUpload(t, s, append([]string{"abort", "--manifest", mp}, ownFlags()...)...)
		if code != 1 || !strings.Contains(errs, "session") {
			t.Errorf("abort --manifest %s = %d %q, want 1", mp, code, errs)
		}
	}
	if _, err := os.Stat(keep); err != nil {
		t.Errorf("abort removed %s: %v", keep, err)
	}
	// An absent session is already aborted; flags are checked.
	mp := filepath.Join(dir, ".slicer-upload-abcd", "manifest.json")
	if code, _, errs := runUpload(t, s, append([]string{"abort", "--manifest", mp}, ownFlags()...)...); code != 0 {
		t.Errorf("abort of a gone session = %d: %s", code, errs)
	}
	for _, args := range [][]string{{"abort"}, {"finalise", "--manifest", mp, "--uid", "x"}, {"abort", "--manifest", mp, "extra"}} {
		if code, _, _ := runUpload(t, s, args...); code != 2 {
			t.Errorf("upload %q = %d, want 2", args, code)
		}
	}
}

func TestUploadFinaliseHomeManifest(t *testing.T) {
	h := newHarness(t)
	home := t.TempDir()
	passwd := fmt.Sprintf("me:x:%d:%d::%s:/bin/sh\n", os.Getuid(), os.Getgid(), home)
	os.WriteFile(filepath.Join(h.srv.etcDir, "passwd"), []byte(passwd), 0o644)
	writeSession(t, home, []byte("hello"), 2, copyManifest{Mode: "binary", Destination: "~/hello.txt"})
	mp := "~/.slicer-upload-" + hex.EncodeToString([]byte("0123456789abcdef")) + "/manifest.json"
	code, _, errs := runUpload(t, h.srv, append([]string{"finalise", "--manifest", mp}, ownFlags()...)...)
	if code != 0 {
		t.Fatalf("finalise = %d: %s", code, errs)
	}
	if b, err := os.ReadFile(filepath.Join(home, "hello.txt")); err != nil || string(b) != "hello" {
		t.Errorf("~/hello.txt = %q, %v", b, err)
	}
}
