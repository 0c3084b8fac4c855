package guest

import (
	"bytes"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/api/cpv1"
	"github.com/openslicer/openslicer/internal/cpv1test"
)

// TestUploadVerdicts uploads every case of cpv1test's table (a tar into an
// existing directory, with the case's excludes) and checks the verdict the
// host client gives the same tar as a download (client
// TestExtractVerdicts).
func TestUploadVerdicts(t *testing.T) {
	h := newHarness(t)
	for _, c := range cpv1test.Cases {
		t.Run(c.Why, func(t *testing.T) {
			dst := t.TempDir()
			q := asMe(url.Values{"path": {dst}, "mode": {"tar"}, "exclude": c.Exclude}) // into dst
			r := h.cp(http.MethodPost, q, tarHeader(1<<20), bytes.NewReader(c.Tar()))
			written := regularFiles(t, dst)
			switch c.Want {
			case cpv1test.Refused:
				if r.status != http.StatusBadRequest || len(written) > 0 {
					t.Errorf("upload of %q excluding %q: %d %s, wrote %q; want 400, nothing written", c.Entry, c.Exclude, r.status, r.body, written)
				}
			case cpv1test.Skipped:
				if r.status != http.StatusOK || len(written) > 0 {
					t.Errorf("upload of %q excluding %q: %d %s, wrote %q; want it skipped", c.Entry, c.Exclude, r.status, r.body, written)
				}
			case cpv1test.Written:
				if r.status != http.StatusOK || len(written) != 1 || written[0] != c.Path {
					t.Fatalf("upload of %q excluding %q: %d %s, wrote %q; want %s written", c.Entry, c.Exclude, r.status, r.body, written, c.Path)
				}
				if b, _ := os.ReadFile(filepath.Join(dst, c.Path)); string(b) != cpv1test.Body {
					t.Errorf("%s holds %q, want %q", c.Path, b, cpv1test.Body)
				}
			}
		})
	}
}

// TestDownloadVerdicts makes, for every case whose name a file can have,
// that file in a directory and downloads the directory with the case's
// excludes: the tar holds the file unless the case skips it, and a bad
// glob is refused, as the client's upload decides (client
// TestCollectVerdicts).
func TestDownloadVerdicts(t *testing.T) {
	h := newHarness(t)
	for _, c := range cpv1test.Cases {
		rel, err := cpv1.EntryName(c.Entry)
		if err != nil || strings.ContainsRune(c.Entry, 0) {
			continue // no file has this name
		}
		t.Run(c.Why, func(t *testing.T) {
			src := t.TempDir()
			if err := os.MkdirAll(filepath.Dir(filepath.Join(src, rel)), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(src, rel), []byte(cpv1test.Body), 0o644); err != nil {
				t.Fatal(err)
			}
			r := h.cp(http.MethodGet, asMe(url.Values{"path": {src}, "mode": {api.CopyModeTar}, "exclude": c.Exclude}), nil, nil)
			if c.Want == cpv1test.Refused {
				if r.status != http.StatusBadRequest {
					t.Errorf("download excluding %q: %d %s, want 400", c.Exclude, r.status, r.body)
				}
				return
			}
			r.wantStatus(t, http.StatusOK)
			_, sent := readTar(t, r.body)[rel]
			if sent != (c.Want == cpv1test.Written) {
				t.Errorf("download of %s excluding %q: sent %v, want %s", rel, c.Exclude, sent, c.Want)
			}
		})
	}
}

// regularFiles lists the regular files under dir, slash-separated and
// relative to it.
func regularFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, filepath.ToSlash(rel))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
