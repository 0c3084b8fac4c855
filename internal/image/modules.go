package image

import (
	"bytes"
	"debug/elf"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// initramfsModules are the kernel modules the guest init loads. The Debian
// cloud kernel builds every virtio driver as a module and finds microvm
// devices through ACPI, so without these the guest has no disk, console
// port, network or entropy. The vsock modules are for hosts with vsock.
var initramfsModules = []string{
	"virtio_ring", "virtio", "virtio_mmio",
	"virtio_console", "virtio_blk", "virtio_rng",
	"failover", "net_failover", "virtio_net",
	"vsock", "vmw_vsock_virtio_transport_common", "vmw_vsock_virtio_transport",
}

// moduleName is the kernel's name for a module file or reference: the file
// name without ".ko", with dashes as underscores (virtio-rng.ko is
// "virtio_rng", which is how other modules' depends= name it).
func moduleName(s string) string {
	return strings.ReplaceAll(strings.TrimSuffix(filepath.Base(s), ".ko"), "-", "_")
}

// loadOrder returns the modules in want and everything they depend on,
// each after all of its dependencies, given each module's depends= list.
// Modules come in the order want names them, so the result is stable.
func loadOrder(mods map[string][]string, want []string) ([]string, error) {
	const (
		visiting = 1
		done     = 2
	)
	state := map[string]int{}
	var order []string
	var visit func(name string, stack []string) error
	visit = func(name string, stack []string) error {
		switch state[name] {
		case done:
			return nil
		case visiting:
			return fmt.Errorf("module dependency cycle: %s", strings.Join(append(stack, name), " -> "))
		}
		deps, ok := mods[name]
		if !ok {
			if len(stack) == 0 {
				return fmt.Errorf("module %q not found", name)
			}
			return fmt.Errorf("module %q (needed by %q) not found", name, stack[len(stack)-1])
		}
		state[name] = visiting
		for _, d := range deps {
			if err := visit(d, append(stack, name)); err != nil {
				return err
			}
		}
		state[name] = done
		order = append(order, name)
		return nil
	}
	for _, w := range want {
		if err := visit(w, nil); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// parseModinfo returns the depends= list of a .modinfo section: NUL
// separated key=value strings.
func parseModinfo(section []byte) []string {
	for _, kv := range bytes.Split(section, []byte{0}) {
		v, ok := bytes.CutPrefix(kv, []byte("depends="))
		if !ok {
			continue
		}
		var deps []string
		for _, d := range strings.Split(string(v), ",") {
			if d != "" {
				deps = append(deps, moduleName(d))
			}
		}
		return deps
	}
	return nil
}

// readModuleDeps reads the depends= list from a .ko file's .modinfo section.
func readModuleDeps(path string) ([]string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read module %s: %w", path, err)
	}
	defer f.Close()
	s := f.Section(".modinfo")
	if s == nil {
		return nil, fmt.Errorf("read module %s: no .modinfo section", path)
	}
	data, err := s.Data()
	if err != nil {
		return nil, fmt.Errorf("read module %s: %w", path, err)
	}
	return parseModinfo(data), nil
}

// builtinModules reads modules.builtin of a lib/modules/<version> tree:
// the modules compiled into the kernel, which need no loading. A tree
// without the file has none.
func builtinModules(modDir string) map[string]bool {
	out := map[string]bool{}
	data, err := os.ReadFile(filepath.Join(modDir, "modules.builtin"))
	if err != nil {
		return out
	}
	for _, l := range strings.Split(string(data), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out[moduleName(l)] = true
		}
	}
	return out
}

// resolveModules finds want and its dependencies under modDir (a
// lib/modules/<version> tree) and returns their files in load order.
func resolveModules(modDir string, want []string) ([]string, error) {
	files := map[string]string{}
	compressed := map[string]string{}
	err := filepath.WalkDir(modDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err // directories, and links: a module is a file of the tree itself
		}
		name := d.Name()
		if strings.HasSuffix(name, ".ko") {
			files[moduleName(name)] = p
		} else if i := strings.Index(name, ".ko."); i > 0 {
			compressed[moduleName(name[:i])] = p
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list modules in %s: %w", modDir, err)
	}
	// Read depends= for want and, transitively, what it names.
	deps := map[string][]string{}
	queue := append([]string(nil), want...)
	for len(queue) > 0 {
		name := queue[0]
		queue = queue[1:]
		if _, seen := deps[name]; seen {
			continue
		}
		p, ok := files[name]
		if !ok {
			if c, ok := compressed[name]; ok {
				return nil, fmt.Errorf("module %q is compressed (%s); only uncompressed .ko files are supported", name, c)
			}
			continue // loadOrder reports it with the module that needs it
		}
		d, err := readModuleDeps(p)
		if err != nil {
			return nil, err
		}
		deps[name] = d
		queue = append(queue, d...)
	}
	order, err := loadOrder(deps, want)
	if err != nil {
		return nil, fmt.Errorf("kernel modules in %s: %w", modDir, err)
	}
	paths := make([]string, len(order))
	for i, name := range order {
		paths[i] = files[name]
	}
	return paths, nil
}
