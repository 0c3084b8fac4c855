package guest

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openslicer/openslicer/api"
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
		got, err := entryName(tt.in)
		switch {
		case tt.want == "" && !errors.Is(err, api.ErrInvalid):
			t.Errorf("entryName(%q) = %q, %v; want it refused", tt.in, got, err)
		case tt.want != "" && (err != nil || got != tt.want):
			t.Errorf("entryName(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestParseExcludes(t *testing.T) {
	got, err := parseExcludes([]string{"*.log", "node_modules/", "./build", "", "/"})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"*.log", "node_modules", "build"}, got); diff != "" {
		t.Errorf("parseExcludes (-want +got):\n%s", diff)
	}
	if _, err := parseExcludes([]string{"a[b"}); !errors.Is(err, api.ErrInvalid) {
		t.Errorf("parseExcludes(a[b) error = %v, want invalid", err)
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
	}
	for _, tt := range tests {
		if got := excluded(tt.rel, tt.globs); got != tt.want {
			t.Errorf("excluded(%q, %q) = %v, want %v", tt.rel, tt.globs, got, tt.want)
		}
	}
}
