package agent

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openslicer/openslicer/api"
)

func TestCheckSecretFiles(t *testing.T) {
	ok := func(name string) SecretFile { return SecretFile{Name: name, Permissions: "0600"} }
	for _, tc := range []struct {
		name    string
		files   []SecretFile
		wantErr string // empty: valid
	}{
		{"empty set", nil, ""},
		{"plain names", []SecretFile{ok("db"), ok("api-key"), ok("a.b_c-1"), ok("x..y")}, ""},
		{"three-digit mode", []SecretFile{{Name: "a", Permissions: "640"}}, ""},
		{"longest name", []SecretFile{ok(strings.Repeat("n", maxSecretNameLen))}, ""},
		{"empty name", []SecretFile{ok("")}, "empty"},
		{"dot", []SecretFile{ok(".")}, "starts with '.'"},
		{"dot dot", []SecretFile{ok("..")}, "starts with '.'"},
		{"hidden", []SecretFile{ok(".env")}, "starts with '.'"},
		{"slash", []SecretFile{ok("a/b")}, `'/' at 1`},
		{"traversal", []SecretFile{ok("../etc/passwd")}, "starts with '.'"},
		{"space", []SecretFile{ok("a b")}, `' ' at 1`},
		{"nul", []SecretFile{ok("a\x00")}, `'\x00' at 1`},
		{"too long", []SecretFile{ok(strings.Repeat("n", maxSecretNameLen+1))}, "more than 253"},
		{"twice", []SecretFile{ok("a"), ok("a")}, `"a" is given twice`},
		{"no mode", []SecretFile{{Name: "a"}}, "permissions are empty"},
		{"not octal", []SecretFile{{Name: "a", Permissions: "rw-"}}, "not octal"},
		{"setuid", []SecretFile{{Name: "a", Permissions: "4755"}}, "exceed 0777"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkSecretFiles(tc.files)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("checkSecretFiles = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, api.ErrInvalid) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("checkSecretFiles = %v, want ErrInvalid containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestStaleEntries(t *testing.T) {
	want := []SecretFile{{Name: "a"}, {Name: "c"}}
	for _, tc := range []struct {
		name string
		have []string
		want []string
	}{
		{"empty dir", nil, nil},
		{"exactly the set", []string{"a", "c"}, nil},
		{"dropped and leftovers", []string{"a", "b", ".tmp-123", "c", "d"}, []string{"b", ".tmp-123", "d"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, staleEntries(tc.have, want)); diff != "" {
				t.Errorf("staleEntries(%q) (-want +got):\n%s", tc.have, diff)
			}
		})
	}
	if got := staleEntries([]string{"a"}, nil); !cmp.Equal(got, []string{"a"}) {
		t.Errorf("staleEntries with the empty set = %q, want every entry", got)
	}
}
