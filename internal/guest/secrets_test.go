package guest

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/agent"
)

func TestCheckSecretFiles(t *testing.T) {
	ok := func(name string) agent.SecretFile { return agent.SecretFile{Name: name, Permissions: "0600"} }
	for _, tc := range []struct {
		name    string
		files   []agent.SecretFile
		wantErr string // empty: valid
	}{
		{"empty set", nil, ""},
		{"plain names", []agent.SecretFile{ok("db"), ok("api-key"), ok("a.b_c-1"), ok("x..y")}, ""},
		{"three-digit mode", []agent.SecretFile{{Name: "a", Permissions: "640"}}, ""},
		{"longest name", []agent.SecretFile{ok(strings.Repeat("n", maxSecretNameLen))}, ""},
		{"empty name", []agent.SecretFile{ok("")}, "empty"},
		{"dot", []agent.SecretFile{ok(".")}, "starts with '.'"},
		{"dot dot", []agent.SecretFile{ok("..")}, "starts with '.'"},
		{"hidden", []agent.SecretFile{ok(".env")}, "starts with '.'"},
		{"slash", []agent.SecretFile{ok("a/b")}, `'/' at 1`},
		{"traversal", []agent.SecretFile{ok("../etc/passwd")}, "starts with '.'"},
		{"space", []agent.SecretFile{ok("a b")}, `' ' at 1`},
		{"nul", []agent.SecretFile{ok("a\x00")}, `'\x00' at 1`},
		{"too long", []agent.SecretFile{ok(strings.Repeat("n", maxSecretNameLen+1))}, "more than 253"},
		{"twice", []agent.SecretFile{ok("a"), ok("a")}, `"a" is given twice`},
		{"no mode", []agent.SecretFile{{Name: "a"}}, "permissions are empty"},
		{"not octal", []agent.SecretFile{{Name: "a", Permissions: "rw-"}}, "not octal"},
		{"setuid", []agent.SecretFile{{Name: "a", Permissions: "4755"}}, "exceed 0777"},
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
	want := []agent.SecretFile{{Name: "a"}, {Name: "c"}}
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
