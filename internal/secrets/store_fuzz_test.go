package secrets

import (
	"context"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/openslicer/openslicer/api"
)

// FuzzCreateSecret creates a secret from an arbitrary name, base64 data and
// permissions, as POST /secrets does, in a fresh store. A refusal is
// api.ErrInvalid. An accepted name is a single safe path element, and the
// secret lands as exactly one file, dir/name, next to the index; its value
// and metadata read back unchanged, also from a store opened again; its
// permissions are four octal digits that parse back to themselves; and a
// delete leaves nothing of it.
func FuzzCreateSecret(f *testing.F) {
	for _, s := range []struct{ name, data, perms string }{
		{"db", "c2VjcmV0", "0640"},
		{"api_key.v2-prod", "", ""},
		{"A", "eA==", "600"},
		{".index.json", "eA==", ""},
		{".hidden", "eA==", ""},
		{"..", "eA==", ""},
		{"../x", "eA==", ""},
		{"a/b", "eA==", ""},
		{"/etc/passwd", "eA==", ""},
		{"a\x00b", "eA==", ""},
		{".slicer-tmp-1", "eA==", ""},
		{strings.Repeat("n", 254), "eA==", ""},
		{"x", "not base64!", ""},
		{"x", "eA", ""},
		{"x", "eA==", "1777"},
		{"x", "eA==", "0o600"},
		{"x", "eA==", "-1"},
		{"x", "eA==", "99999999999999999999"},
		{"é", "eA==", ""},
	} {
		f.Add(s.name, s.data, s.perms)
	}
	f.Fuzz(func(t *testing.T, name, data, perms string) {
		nameErr := ValidateName(name)
		if nameErr == nil {
			checkSafeName(t, name)
		} else if !errors.Is(nameErr, api.ErrInvalid) {
			t.Fatalf("ValidateName(%q): error %v is not api.ErrInvalid", name, nameErr)
		}
		if m, err := ParsePermissions(perms); err == nil {
			if m > 0o777 {
				t.Fatalf("ParsePermissions(%q) = %o", perms, m)
			}
			if again, err := ParsePermissions(FormatPermissions(m)); err != nil || again != m {
				t.Fatalf("permissions %q: %o formats as %q, which parses as %o, %v", perms, m, FormatPermissions(m), again, err)
			}
		}

		dir := filepath.Join(t.TempDir(), "secrets")
		st, err := Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		sec, err := st.Create(ctx, api.CreateSecretRequest{Name: name, Data: data, Permissions: perms, UID: 7, GID: 8})
		if err != nil {
			if !errors.Is(err, api.ErrInvalid) {
				t.Fatalf("Create(%q, %q, %q): error %v is not api.ErrInvalid", name, data, perms, err)
			}
			if nameErr == nil && !strings.Contains(err.Error(), "permissions") && !strings.Contains(err.Error(), "base64") {
				t.Fatalf("Create(%q, %q, %q) refused a valid name without naming what is wrong: %v", name, data, perms, err)
			}
			checkDirHolds(t, dir)
			return
		}
		if nameErr != nil {
			t.Fatalf("Create accepted the name %q that ValidateName refuses", name)
		}
		want, _ := base64.StdEncoding.DecodeString(data)
		if sec.Name != name || sec.Size != int64(len(want)) || len(sec.Permissions) != 4 || sec.UID != 7 || sec.GID != 8 {
			t.Fatalf("Create(%q, %q, %q) = %+v", name, data, perms, sec)
		}
		if m, err := ParsePermissions(sec.Permissions); err != nil || FormatPermissions(m) != sec.Permissions {
			t.Fatalf("permissions %q of a stored secret do not parse back: %v", sec.Permissions, err)
		}
		checkDirHolds(t, dir, name)
		for _, s := range []*Store{st, reopen(t, dir)} {
			got, value, err := s.Get(name)
			same := got.ModifiedAt != nil && sec.ModifiedAt != nil && got.ModifiedAt.Equal(*sec.ModifiedAt)
			got.ModifiedAt = sec.ModifiedAt
			if err != nil || string(value) != string(want) || got != sec || !same {
				t.Fatalf("Get(%q) = %+v, %q, %v; want %+v, %q", name, got, value, err, sec, want)
			}
		}
		if err := st.Delete(name); err != nil {
			t.Fatalf("Delete(%q): %v", name, err)
		}
		checkDirHolds(t, dir)
		if _, _, err := reopen(t, dir).Get(name); !errors.Is(err, api.ErrNotFound) {
			t.Fatalf("Get(%q) after Delete: %v, want api.ErrNotFound", name, err)
		}
	})
}

// checkSafeName checks what ValidateName promises: a single path element
// that cannot climb, hide or collide with the store's own files.
func checkSafeName(t *testing.T, name string) {
	t.Helper()
	switch {
	case len(name) == 0 || len(name) > MaxNameLen:
		t.Fatalf("accepted a name of %d bytes", len(name))
	case name == "." || name == ".." || strings.HasPrefix(name, "."):
		t.Fatalf("accepted the name %q", name)
	case strings.ContainsAny(name, "/\\\x00") || filepath.Base(name) != name || !filepath.IsLocal(name):
		t.Fatalf("accepted %q, which is not a single path element", name)
	}
}

// checkDirHolds checks that dir holds the index (when anything was ever
// committed) and exactly the named values: no temporary file is left.
func checkDirHolds(t *testing.T, dir string, names ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		if e.Name() != indexName {
			got = append(got, e.Name())
		}
	}
	if !slices.Equal(got, names) {
		t.Fatalf("the store directory holds %q, want %q", got, names)
	}
}

func reopen(t *testing.T, dir string) *Store {
	t.Helper()
	st, err := Open(dir)
	if err != nil {
		t.Fatalf("open the store again: %v", err)
	}
	return st
}
