package client

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/openslicer/openslicer/api"
)

// makeTree writes a small tree with distinct modes and mtimes, plus a
// symlink that a copy must skip.
func makeTree(t *testing.T) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "proj")
	mtime := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	files := map[string]os.FileMode{"a.txt": 0o644, "sub/run.sh": 0o755, "sub/skip.log": 0o600}
	for name, mode := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("data of "+name), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("a.txt", filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{filepath.Join(root, "sub"), root} {
		if err := os.Chtimes(d, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

type tarItem struct {
	Name  string
	Mode  int64
	Mtime time.Time
	Data  string
}

func readTarItems(t *testing.T, r io.Reader) []tarItem {
	t.Helper()
	var items []tarItem
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return items
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		items = append(items, tarItem{h.Name, h.Mode, h.ModTime.UTC(), string(b)})
	}
}

func TestCpToVMDirectory(t *testing.T) {
	src := makeTree(t)
	var got struct {
		query    map[string][]string
		ctype    string
		unpacked string
		items    []tarItem
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/vm/vm-1/cp" {
			http.NotFound(w, r)
			return
		}
		got.query = r.URL.Query()
		got.ctype = r.Header.Get("Content-Type")
		got.unpacked = r.Header.Get(api.HeaderUnpackedSize)
		got.items = readTarItems(t, r.Body)
	}))
	defer srv.Close()
	uid := uint32(0)
	err := New(srv.URL, "").CpToVM(context.Background(), "vm-1", src, "/home/u/", CopyOptions{
		Recursive: true, UID: &uid, Permissions: "0750", Exclude: []string{"*.log"},
	})
	if err != nil {
		t.Fatal(err)
	}
	wantQuery := map[string][]string{
		"path": {"/home/u/"}, "mode": {"cp-v1-tar"}, "copy_semantics": {"cp-v1"}, "source_name": {"proj"},
		"source_type": {"directory"}, "uid": {"0"}, "permissions": {"0750"}, "exclude": {"*.log"},
	}
	if diff := cmp.Diff(wantQuery, got.query); diff != "" {
		t.Errorf("query (-want +got):\n%s", diff)
	}
	if got.ctype != "application/x-tar" {
		t.Errorf("Content-Type = %q", got.ctype)
	}
	// a.txt (13 bytes) + sub/run.sh (18 bytes); the excluded log is not counted.
	if got.unpacked != "31" {
		t.Errorf("%s = %q, want 31", api.HeaderUnpackedSize, got.unpacked)
	}
	mtime := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	want := []tarItem{
		{"a.txt", 0o644, mtime, "data of a.txt"},
		{"sub/", 0o750, mtime, ""},
		{"sub/run.sh", 0o755, mtime, "data of sub/run.sh"},
	}
	if diff := cmp.Diff(want, got.items); diff != "" {
		t.Errorf("tar entries (-want +got):\n%s", diff)
	}
}

func TestCpToVMFileLegacyFallback(t *testing.T) {
	src := filepath.Join(t.TempDir(), "f.bin")
	payload := []byte{0, 1, 2, 0xff}
	if err := os.WriteFile(src, payload, 0o600); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var modes []string
	var body []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		mode := r.URL.Query().Get("mode")
		modes = append(modes, mode)
		if mode == api.CopyModeBinary {
			http.Error(w, "invalid mode: cp-v1-binary", http.StatusBadRequest)
			return
		}
		body, _ = io.ReadAll(r.Body)
	}))
	defer srv.Close()
	if err := New(srv.URL, "").CpToVM(context.Background(), "vm-1", src, "/tmp/x", CopyOptions{}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"cp-v1-binary", "binary"}, modes); diff != "" {
		t.Errorf("modes tried (-want +got):\n%s", diff)
	}
	if !bytes.Equal(body, payload) {
		t.Errorf("legacy retry sent %v, want %v", body, payload)
	}
}

func TestCpFromVMDirectoryKeepsModesAndMtimes(t *testing.T) {
	src := makeTree(t)
	entries, _, err := collectTree(src, nil)
	if err != nil {
		t.Fatal(err)
	}
	var accept string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		accept = r.Header.Get("Accept")
		if r.URL.Query().Get("mode") != api.CopyModeRecursive {
			http.Error(w, "bad mode", http.StatusBadRequest)
			return
		}
		w.Header().Set(api.HeaderSourceType, api.CopySourceDirectory)
		w.Header().Set(api.HeaderSourceNameBase64, base64.RawURLEncoding.EncodeToString([]byte("proj")))
		_ = writeTar(w, entries)
	}))
	defer srv.Close()
	dst := t.TempDir() // exists: the tree lands in dst/proj
	if err := New(srv.URL, "").CpFromVM(context.Background(), "vm-1", "/home/u/proj", dst, CopyOptions{Recursive: true}); err != nil {
		t.Fatal(err)
	}
	if accept != "application/octet-stream, application/x-tar" {
		t.Errorf("Accept = %q", accept)
	}
	type fileState struct {
		Mode  os.FileMode
		Mtime time.Time
	}
	state := func(root string) map[string]fileState {
		out := map[string]fileState{}
		_ = filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
			if err != nil || p == root || fi.Mode()&os.ModeSymlink != 0 {
				return err
			}
			rel, _ := filepath.Rel(root, p)
			out[rel] = fileState{fi.Mode(), fi.ModTime().UTC()}
			return nil
		})
		return out
	}
	if diff := cmp.Diff(state(src), state(filepath.Join(dst, "proj"))); diff != "" {
		t.Errorf("copied tree differs (-src +dst):\n%s", diff)
	}
}

func TestCpFromVMFileAndReadFile(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("path") == "/missing" {
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		w.Header().Set(api.HeaderSourceType, api.CopySourceFile)
		w.Header().Set(api.HeaderSourceNameBase64, base64.RawURLEncoding.EncodeToString([]byte("a b.txt")))
		w.Header().Set(api.HeaderFileMode, "0640")
		_, _ = io.WriteString(w, "hello")
	}))
	defer srv.Close()
	c := New(srv.URL, "")
	ctx := context.Background()
	dst := t.TempDir()
	if err := c.CpFromVM(ctx, "vm-1", "/x/a b.txt", dst, CopyOptions{}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dst, "a b.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o640 {
		t.Errorf("mode = %v, want 0640", fi.Mode().Perm())
	}
	left, _ := os.ReadDir(dst)
	names := []string{}
	for _, e := range left {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	if diff := cmp.Diff([]string{"a b.txt"}, names); diff != "" {
		t.Errorf("files left (temp files must be renamed away):\n%s", diff)
	}
	b, err := c.ReadFile(ctx, "vm-1", "/x/a b.txt")
	if err != nil || string(b) != "hello" {
		t.Errorf("ReadFile = %q, %v", b, err)
	}
	if _, err := c.ReadFile(ctx, "vm-1", "/missing"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ReadFile of a missing file = %v, want os.ErrNotExist", err)
	}
	if err := c.CpFromVM(ctx, "vm-1", "/missing", dst, CopyOptions{}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("CpFromVM of a missing file = %v, want os.ErrNotExist", err)
	}
}

func TestCpFromVMWithoutMetadata(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "x")
	}))
	defer srv.Close()
	err := New(srv.URL, "").CpFromVM(context.Background(), "vm-1", "/a", filepath.Join(t.TempDir(), "a"), CopyOptions{})
	if err == nil {
		t.Fatal("a v1 download without metadata was accepted")
	}
}
