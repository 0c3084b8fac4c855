package agent

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestImports keeps the agent, which is also the guest binary, small and
// apart from the daemon: the wire types, yamux, x/sys and the standard
// library only.
func TestImports(t *testing.T) {
	allowed := map[string]bool{
		"github.com/openslicer/openslicer/api": true,
		"github.com/hashicorp/yamux":           true,
		"golang.org/x/sys/unix":                true,
	}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if strings.Contains(strings.Split(p, "/")[0], ".") && !allowed[p] {
				t.Errorf("%s imports %s, which the agent may not", name, p)
			}
		}
	}
}
