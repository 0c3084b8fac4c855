package testenv

import (
	"encoding/json"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

const module = "github.com/openslicer/openslicer"

type pkg struct {
	ImportPath string
	Doc        string
	Imports    []string
	Deps       []string
}

// listPackages returns every package of the module with its transitive
// dependencies, as `go list` sees them.
func listPackages(t *testing.T) []pkg {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("needs the go tool")
	}
	out, err := exec.Command("go", "list", "-json", module+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

func TestEveryPackageHasADocComment(t *testing.T) {
	for _, p := range listPackages(t) {
		if strings.TrimSpace(p.Doc) == "" {
			t.Errorf("package %s has no package comment", p.ImportPath)
		}
	}
}

// Sets of module packages the fences below are made of.
var (
	public = []string{"api", "api/cpv1", "api/shellframe"}
	// wire is what both ends of the agent protocol may share.
	wire = join(public, "internal/accounts", "internal/agent", "internal/agent/channel", "internal/agent/imageconfig", "internal/procfile")
	// vmCore is the core and what it stands on; the guest is not in it.
	vmCore = []string{
		"api", "internal/agent", "internal/config", "internal/imageref", "internal/hypervisor",
		"internal/network", "internal/secrets", "internal/store", "internal/vmstate",
	}
	// host is every package the daemon may link: never the guest.
	host = join(vmCore, public, "internal/accounts", "internal/agent/channel", "internal/agent/imageconfig", "internal/procfile", "internal/hypervisor/qemu",
		"internal/image", "internal/image/unpack", "internal/doctor", "internal/githubkeys",
		"internal/systemd", "internal/vm", "internal/server")
)

// fences is who may import whom (docs/ARCHITECTURE.md): for each package
// of the module, the module packages it may depend on, transitively.
var fences = map[string][]string{
	"api":            {},
	"api/shellframe": {},
	"api/cpv1":       {"api"},
	"client":         public,
	"internal/cli":   join(public, "client"),

	// Leaves both the host and the guest may import.
	"internal/accounts":          {},
	"internal/agent/channel":     {},
	"internal/agent/imageconfig": {},
	"internal/procfile":          {},

	"internal/agent":         {"api"},
	"internal/guest/sysconf": {},
	"internal/guest":         join(wire, "internal/guest/sysconf"),
	"internal/guest/pid1":    join(wire, "internal/guest", "internal/guest/sysconf"),
	"cmd/slicer-agent":       join(wire, "internal/guest", "internal/guest/pid1", "internal/guest/sysconf"),

	"internal/vmstate":      {"api"},
	"internal/store":        {"api", "internal/vmstate"},
	"internal/imageref":     {},
	"internal/config":       {"internal/imageref"},
	"internal/image/unpack": {},
	"internal/image":        {"api", "internal/accounts", "internal/agent/imageconfig", "internal/image/unpack", "internal/imageref"},
	"internal/secrets":      {"api"},
	"internal/githubkeys":   {"api"},
	"internal/systemd":      {"api"},
	"internal/network":      {"api", "internal/config", "internal/imageref"},

	"internal/hypervisor":                           {"api"},
	"internal/hypervisor/qemu":                      {"api", "internal/agent/channel", "internal/hypervisor"},
	"internal/hypervisor/hypervisortest":            {"api", "internal/hypervisor"},
	"internal/hypervisor/hypervisortest/agentguest": {"api", "internal/agent", "internal/hypervisor", "internal/hypervisor/hypervisortest"},

	"internal/vm":     vmCore,
	"internal/server": join(vmCore, "api/shellframe", "internal/procfile", "internal/vm"),
	"internal/doctor": {
		"api", "internal/accounts", "internal/agent/imageconfig", "internal/config", "internal/image", "internal/image/unpack", "internal/imageref",
		"internal/network", "internal/hypervisor", "internal/hypervisor/qemu", "internal/agent/channel",
	},
	"internal/daemon":  host,
	"cmd/slicer":       join(host, "client", "internal/cli", "internal/daemon"),
	"cmd/slicer-bench": join(host, "client", "internal/daemon"),

	"internal/cpv1test": {},
	"internal/testenv":  {},
	"e2e":               {},
}

// direct narrows what some packages may import themselves, where the
// transitive fence allows more: the server reaches the agent, the
// hypervisor and the store only through the vm package.
var direct = map[string][]string{
	"internal/server": {"api", "api/shellframe", "internal/procfile", "internal/vm", "internal/vmstate"},
}

// join returns a new list holding the lists' elements and more.
func join(list []string, more ...any) []string {
	out := append([]string(nil), list...)
	for _, m := range more {
		switch m := m.(type) {
		case string:
			out = append(out, m)
		case []string:
			out = append(out, m...)
		}
	}
	return out
}

// TestDependencyFences enforces the fences: every package of the module
// has one, and depends on nothing outside it.
func TestDependencyFences(t *testing.T) {
	for _, p := range listPackages(t) {
		rel := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")
		ok, fenced := fences[rel]
		if !fenced {
			t.Errorf("package %s has no fence: add it to fences (and docs/ARCHITECTURE.md)", rel)
			continue
		}
		for _, d := range p.Deps {
			if !strings.HasPrefix(d, module+"/") {
				continue
			}
			dep := strings.TrimPrefix(d, module+"/")
			if !contains(ok, dep) {
				t.Errorf("%s imports %s; it may only use %v from this module", rel, dep, ok)
			}
		}
		if ok, narrowed := direct[rel]; narrowed {
			for _, imp := range p.Imports {
				if dep, mod := strings.CutPrefix(imp, module+"/"); mod && !contains(ok, dep) {
					t.Errorf("%s imports %s itself; it may import only %v from this module", rel, dep, ok)
				}
			}
		}
	}
}

// TestDaemonLinksNoGuestCode keeps what only the guest needs out of the
// daemon binary: no PTY or inotify code, nothing of the guest package.
func TestDaemonLinksNoGuestCode(t *testing.T) {
	banned := []string{"github.com/creack/pty", "github.com/fsnotify/fsnotify", module + "/internal/guest"}
	for _, p := range listPackages(t) {
		if p.ImportPath != module+"/cmd/slicer" {
			continue
		}
		for _, d := range p.Deps {
			for _, b := range banned {
				if d == b || strings.HasPrefix(d, b+"/") {
					t.Errorf("cmd/slicer depends on %s", d)
				}
			}
		}
		return
	}
	t.Fatal("cmd/slicer not found")
}

// architectureRows returns the packages docs/ARCHITECTURE.md gives a row
// in its package table.
func architectureRows(t *testing.T) map[string]bool {
	t.Helper()
	doc, err := os.ReadFile("../../docs/ARCHITECTURE.md")
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([^`]+)` \\|").FindAllStringSubmatch(string(doc), -1) {
		listed[m[1]] = true
	}
	if len(listed) == 0 {
		t.Fatal("docs/ARCHITECTURE.md has no package rows")
	}
	return listed
}

// TestArchitectureListsEveryPackage keeps the package table of
// docs/ARCHITECTURE.md true: every package of the module, the commands
// included, has a row, and every row names a package.
func TestArchitectureListsEveryPackage(t *testing.T) {
	listed := architectureRows(t)
	have := map[string]bool{}
	for _, p := range listPackages(t) {
		rel := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")
		have[rel] = true
		if !listed[rel] {
			t.Errorf("package %s has no row in docs/ARCHITECTURE.md", rel)
		}
	}
	for name := range listed {
		if !have[name] {
			t.Errorf("docs/ARCHITECTURE.md lists %s, which is not a package", name)
		}
	}
}

// TestFencesMatchArchitecture keeps the fence table and the package table
// of docs/ARCHITECTURE.md in step: every package the document lists has a
// fence, and every fence is for a package the document lists, so no
// package escapes the fences and no fence outlives its package.
func TestFencesMatchArchitecture(t *testing.T) {
	listed := architectureRows(t)
	for name := range listed {
		if _, ok := fences[name]; !ok {
			t.Errorf("docs/ARCHITECTURE.md lists %s, which has no fence in layout_test.go", name)
		}
	}
	for name, allowed := range fences {
		if !listed[name] {
			t.Errorf("fence for %s, which docs/ARCHITECTURE.md does not list", name)
		}
		for _, dep := range allowed {
			if !listed[dep] {
				t.Errorf("fence of %s allows %s, which docs/ARCHITECTURE.md does not list", name, dep)
			}
		}
	}
	for name, allowed := range direct {
		for _, dep := range allowed {
			if !contains(fences[name], dep) {
				t.Errorf("%s may import %s itself but its fence does not allow it", name, dep)
			}
		}
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// TestThirdPartyImports keeps the public packages and the guest agent small:
// the outside modules each may import directly.
func TestThirdPartyImports(t *testing.T) {
	allowed := map[string][]string{
		"api":                        {},
		"api/shellframe":             {},
		"api/cpv1":                   {},
		"internal/agent/channel":     {},
		"internal/agent/imageconfig": {},
		"client":                     {"github.com/coder/websocket"},
		"internal/cli":               {"github.com/spf13/cobra", "golang.org/x/sys/unix"},
		"internal/agent":             {"github.com/hashicorp/yamux"},
		"internal/guest":             {"github.com/hashicorp/yamux", "golang.org/x/sys/unix", "github.com/creack/pty", "github.com/fsnotify/fsnotify"},
		"internal/guest/pid1":        {"golang.org/x/sys/unix"},
		"internal/guest/sysconf":     {"golang.org/x/sys/unix"},
		"cmd/slicer-agent":           {},
	}
	for _, p := range listPackages(t) {
		rel := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")
		ok, fenced := allowed[rel]
		if !fenced {
			continue
		}
		for _, imp := range p.Imports {
			thirdParty := strings.Contains(strings.Split(imp, "/")[0], ".") && !strings.HasPrefix(imp, module+"/")
			if thirdParty && !contains(ok, imp) {
				t.Errorf("%s imports %s; its outside imports are limited to %v", rel, imp, ok)
			}
		}
	}
}
