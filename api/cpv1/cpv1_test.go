package cpv1

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/cpv1test"
)

func TestEntryName(t *testing.T) {
	tests := []struct {
		in   string
		want string // empty: refused
	}{
		{"a.txt", "a.txt"},
		{"sub/", "sub"},
		{"./sub/b.txt", "sub/b.txt"},
		{"sub//b.txt", "sub/b.txt"},
		{"./", "."},
		{".", "."},
		{"a..b", "a..b"},
		{"..c/d", "..c/d"},
		{"x/..y", "x/..y"},
		{"..", ""},
		{"../evil", ""},
		{"a/../../evil", ""},
		{"a/../b", ""},
		{"sub/..", ""},
		{"/etc/passwd", ""},
		{"", ""},
		{"a\x00b", ""},
	}
	for _, tt := range tests {
		got, err := EntryName(tt.in)
		switch {
		case tt.want == "" && !errors.Is(err, api.ErrInvalid):
			t.Errorf("EntryName(%q) = %q, %v; want it refused", tt.in, got, err)
		case tt.want != "" && (err != nil || got != tt.want):
			t.Errorf("EntryName(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestParseExcludes(t *testing.T) {
	got, err := ParseExcludes([]string{"*.log", "node_modules/", "./build", "", "/", "././a", ".//b/", "./", "c/./d"})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"*.log", "node_modules", "build", "a", "b", ".", "c/./d"}, got); diff != "" {
		t.Errorf("ParseExcludes (-want +got):\n%s", diff)
	}
	for _, bad := range []string{"a[b", "a\x00", "\x00"} {
		if _, err := ParseExcludes([]string{"ok", bad}); !errors.Is(err, api.ErrInvalid) {
			t.Errorf("ParseExcludes(%q) error = %v, want invalid", bad, err)
		}
	}
}

func TestExcluded(t *testing.T) {
	tests := []struct {
		rel   string
		globs []string
		want  bool
	}{
		{"a.log", []string{"*.log"}, true},
		{"sub/a.log", []string{"*.log"}, true},
		{"sub/a.txt", []string{"*.log"}, false},
		{"node_modules", []string{"node_modules"}, true},
		{"node_modules/x/y.js", []string{"node_modules"}, true},
		{"web/node_modules/x.js", []string{"node_modules"}, true},
		{"sub/a.txt", []string{"sub/*.txt"}, true},
		{"other/sub/a.txt", []string{"sub/*.txt"}, false},
		{"sub/deep/a.txt", []string{"sub/deep"}, true},
		{"subway/a.txt", []string{"sub"}, false},
		{"a.txt", nil, false},
		{".git/config", []string{".git"}, true},
		{"build/out", []string{"build/*"}, true},
		{"build", []string{"build/*"}, false},
	}
	for _, tt := range tests {
		if got := Excluded(tt.rel, tt.globs); got != tt.want {
			t.Errorf("Excluded(%q, %q) = %v, want %v", tt.rel, tt.globs, got, tt.want)
		}
	}
}

// TestCasesFollowTheRules checks the verdicts of the table both ends'
// extraction tests run (internal/cpv1test) against the rules themselves.
func TestCasesFollowTheRules(t *testing.T) {
	for _, c := range cpv1test.Cases {
		var got cpv1test.Verdict
		rel, nameErr := EntryName(c.Entry)
		globs, globErr := ParseExcludes(c.Exclude)
		switch {
		case globErr != nil || nameErr != nil:
			got = cpv1test.Refused
		case Excluded(rel, globs):
			got = cpv1test.Skipped
		default:
			got = cpv1test.Written
		}
		if got != c.Want || got == cpv1test.Written && rel != c.Path {
			t.Errorf("%s: %q excluding %q is %s at %q by the rules; the table says %s at %q", c.Why, c.Entry, c.Exclude, got, rel, c.Want, c.Path)
		}
	}
}
