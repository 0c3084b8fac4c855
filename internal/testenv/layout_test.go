package testenv

import (
	"encoding/json"
	"os/exec"
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

// TestDependencyFences enforces who may import whom (docs/ARCHITECTURE.md):
// for each package, the module packages it may depend on, transitively.
func TestDependencyFences(t *testing.T) {
	allowed := map[string][]string{
		"api":                    {},
		"api/shellframe":         {},
		"client":                 {"api", "api/shellframe"},
		"internal/cli":           {"api", "api/shellframe", "client"},
		"internal/agent":         {"api", "api/shellframe", "internal/agent/channel"},
		"internal/agent/channel": {},
		"cmd/slicer-agent":       {"api", "api/shellframe", "internal/agent", "internal/agent/channel"},
		"internal/store":         {"api", "internal/vmstate"},
		"internal/vmstate":       {"api"},
		"internal/config":        {"internal/imageref"},
		"internal/imageref":      {},
		"internal/image/unpack":  {},
		"internal/hypervisor":    {"api"},
		"internal/hypervisor/qemu": {
			"api", "internal/agent/channel", "internal/hypervisor",
		},
		"internal/hypervisor/hypervisortest": {"api", "internal/hypervisor"},
		"internal/hypervisor/hypervisortest/agentguest": {
			"api", "api/shellframe", "internal/agent", "internal/agent/channel", "internal/hypervisor", "internal/hypervisor/hypervisortest",
		},
		"internal/image":   {"api", "internal/image/unpack", "internal/imageref"},
		"internal/systemd": {"api"},
		"internal/doctor": {
			"api", "internal/config", "internal/image", "internal/image/unpack", "internal/imageref",
			"internal/network", "internal/hypervisor", "internal/hypervisor/qemu", "internal/agent/channel",
		},
	}
	for _, p := range listPackages(t) {
		rel := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")
		ok, fenced := allowed[rel]
		if !fenced {
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
		"api":              {},
		"client":           {"github.com/coder/websocket"},
		"internal/cli":     {"github.com/spf13/cobra", "golang.org/x/sys/unix"},
		"internal/agent":   {"github.com/hashicorp/yamux", "golang.org/x/sys/unix", "github.com/creack/pty", "github.com/fsnotify/fsnotify"},
		"cmd/slicer-agent": {},
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
