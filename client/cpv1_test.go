package client

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/api/cpv1"
	"github.com/openslicer/openslicer/internal/cpv1test"
)

// TestExtractVerdicts extracts every case of cpv1test's table as a
// download would, and checks the verdict the guest gives the same tar as
// an upload (internal/guest TestUploadVerdicts).
func TestExtractVerdicts(t *testing.T) {
	for _, c := range cpv1test.Cases {
		t.Run(c.Why, func(t *testing.T) {
			dst := t.TempDir()
			err := extractTar(bytes.NewReader(c.Tar()), dst, c.Exclude, -1, -1)
			checkVerdict(t, c, dst, err)
		})
	}
}

// checkVerdict checks what a copy into dst that returned err did against
// the case's verdict.
func checkVerdict(t *testing.T, c cpv1test.Case, dst string, err error) {
	t.Helper()
	var written []string
	_ = filepath.WalkDir(dst, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			rel, _ := filepath.Rel(dst, p)
			written = append(written, filepath.ToSlash(rel))
		}
		return nil
	})
	switch c.Want {
	case cpv1test.Refused:
		if err == nil || len(written) > 0 {
			t.Errorf("copy of %q excluding %q: error %v, wrote %q; want it refused, nothing written", c.Entry, c.Exclude, err, written)
		}
	case cpv1test.Skipped:
		if err != nil || len(written) > 0 {
			t.Errorf("copy of %q excluding %q: error %v, wrote %q; want it skipped", c.Entry, c.Exclude, err, written)
		}
	case cpv1test.Written:
		if err != nil || len(written) != 1 || written[0] != c.Path {
			t.Fatalf("copy of %q excluding %q: error %v, wrote %q; want %s written", c.Entry, c.Exclude, err, written, c.Path)
		}
		if b, _ := os.ReadFile(filepath.Join(dst, filepath.FromSlash(c.Path))); string(b) != cpv1test.Body {
			t.Errorf("%s holds %q, want %q", c.Path, b, cpv1test.Body)
		}
	}
}

// TestCollectVerdicts makes, for every case whose name a file can have,
// that file in a directory and lists the directory for an upload with the
// case's excludes: the file is sent unless the case skips it, and a bad
// glob is refused, as the guest's download decides (internal/guest
// TestDownloadVerdicts).
func TestCollectVerdicts(t *testing.T) {
	for _, c := range cpv1test.Cases {
		rel, err := cpv1.EntryName(c.Entry)
		if err != nil || strings.ContainsRune(c.Entry, 0) {
			continue // no file has this name
		}
		t.Run(c.Why, func(t *testing.T) {
			src := t.TempDir()
			p := filepath.Join(src, filepath.FromSlash(rel))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(cpv1test.Body), 0o644); err != nil {
				t.Fatal(err)
			}
			entries, _, err := collectTree(src, c.Exclude)
			if c.Want == cpv1test.Refused {
				if !errors.Is(err, api.ErrInvalid) {
					t.Errorf("collectTree excluding %q: %v, want it refused", c.Exclude, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			sent := false
			for _, e := range entries {
				sent = sent || e.rel == rel && !e.dir
			}
			if sent != (c.Want == cpv1test.Written) {
				t.Errorf("collectTree of %s excluding %q: sent %v, want %s", rel, c.Exclude, sent, c.Want)
			}
		})
	}
}
