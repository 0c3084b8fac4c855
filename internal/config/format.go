package config

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// Format renders cfg as YAML in the layout `slicer new` prints: fields in a
// fixed order, unset ones left out, images, modes, addresses and list items
// double-quoted. graceful_shutdown and api.auth appear only when set. Parse
// reads the result back to the same Config.
func Format(cfg *Config) string {
	w := &writer{}
	w.line(0, "config:")
	if len(cfg.HostGroups) == 0 {
		w.line(1, "host_groups: []")
	} else {
		w.line(1, "host_groups:")
	}
	for _, g := range cfg.HostGroups {
		formatGroup(w, g)
	}
	w.str(1, "github_user", plain(cfg.GitHubUser))
	if cfg.SSHKeys != nil {
		w.line(1, "ssh_keys:")
		for _, k := range cfg.SSHKeys {
			w.line(1, "- "+strconv.Quote(k))
		}
	}
	w.str(1, "image", quote(cfg.Image))
	w.str(1, "kernel_image", quote(cfg.KernelImage))
	w.str(1, "kernel_file", quote(cfg.KernelFile))
	w.str(1, "hypervisor", plain(cfg.Hypervisor))
	if cfg.GracefulShutdown != nil {
		w.line(1, fmt.Sprintf("graceful_shutdown: %t", *cfg.GracefulShutdown))
	}
	if cfg.InsecureRegistry {
		w.line(1, "insecure_registry: true")
	}
	w.str(1, "boot_watchdog", plain(cfg.BootWatchdog))
	formatAPI(w, cfg.API)
	return w.String()
}

func formatGroup(w *writer, g HostGroup) {
	name := plain(g.Name)
	if name == "" {
		name = `""`
	}
	w.line(1, "- name: "+name)
	w.str(2, "storage", plain(g.Storage))
	w.str(2, "storage_size", plain(g.StorageSize))
	if g.Count != nil {
		w.int(2, "count", int64(*g.Count), true)
	}
	w.int(2, "vcpu", int64(g.VCPU), false)
	w.int(2, "ram_gb", g.RamGB, false)
	w.int(2, "ram_mb", g.RamMB, false)
	w.int(2, "ram_bytes", g.RamBytes, false)
	if g.Persistent {
		w.line(2, "persistent: true")
	}
	w.int(2, "gpu_count", int64(g.GPUCount), false)
	w.list(2, "dns_servers", g.DNSServers)
	if g.Userdata != "" {
		w.block(2, "userdata", g.Userdata)
	}
	w.str(2, "userdata_file", quote(g.UserdataFile))
	w.str(2, "kernel_args", quote(g.KernelArgs))
	w.str(2, "image", quote(g.Image))
	w.str(2, "init", plain(g.Init))
	if n := g.Network; n != nil {
		// A network with every setting left out is still a network:
		// "network:" alone would read back as none.
		fields := &writer{}
		fields.str(3, "mode", quote(n.Mode))
		fields.str(3, "bridge", plain(n.Bridge))
		fields.str(3, "tap_prefix", plain(n.TapPrefix))
		fields.str(3, "gateway", plain(n.Gateway))
		fields.str(3, "range", plain(n.Range))
		fields.list(3, "addresses", n.Addresses)
		fields.list(3, "drop", n.Drop)
		fields.list(3, "allow", n.Allow)
		if fields.Len() == 0 {
			w.line(2, "network: {}")
		} else {
			w.line(2, "network:")
			w.WriteString(fields.String())
		}
	}
}

func formatAPI(w *writer, a API) {
	if a == (API{}) {
		return
	}
	w.line(1, "api:")
	w.int(2, "port", int64(a.Port), false)
	w.str(2, "bind_address", quote(a.BindAddress))
	if a.Auth.Enabled == nil && a.Auth.Token == "" {
		return
	}
	w.line(2, "auth:")
	if a.Auth.Enabled != nil {
		w.line(3, fmt.Sprintf("enabled: %t", *a.Auth.Enabled))
	}
	w.str(3, "token", quote(a.Auth.Token))
}

// writer builds YAML text two spaces per level.
type writer struct{ strings.Builder }

func (w *writer) line(level int, s string) {
	w.WriteString(strings.Repeat("  ", level) + s + "\n")
}

// str writes key: v, unless v (already quoted or plain) is empty.
func (w *writer) str(level int, key, v string) {
	if v != "" {
		w.line(level, key+": "+v)
	}
}

// int writes key: n, unless n is zero and not wanted anyway.
func (w *writer) int(level int, key string, n int64, always bool) {
	if n != 0 || always {
		w.line(level, key+": "+strconv.FormatInt(n, 10))
	}
}

// list writes key: ["a", "b"]; a nil list is left out, an empty one is [].
func (w *writer) list(level int, key string, items []string) {
	if items == nil {
		return
	}
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = strconv.Quote(s)
	}
	w.line(level, key+": ["+strings.Join(q, ", ")+"]")
}

// block writes a multi-line string as a literal block (key: |), or quoted
// when a block cannot carry it exactly.
func (w *writer) block(level int, key, s string) {
	body := strings.TrimRight(s, "\n")
	if body == "" || !blockSafe(body) {
		w.line(level, key+": "+strconv.Quote(s))
		return
	}
	header := "|"
	if first := strings.TrimLeft(body, "\n"); strings.HasPrefix(first, " ") || strings.HasPrefix(first, "\t") {
		header += "2" // content indent cannot be guessed from leading white space
	}
	switch trailing := len(s) - len(body); {
	case trailing == 0:
		header += "-"
	case trailing > 1:
		header += "+"
	}
	w.line(level, key+": "+header)
	for _, l := range strings.Split(body, "\n") {
		if l == "" {
			w.WriteString("\n")
		} else {
			w.line(level+1, l)
		}
	}
	for range len(s) - len(body) - 1 {
		w.WriteString("\n")
	}
}

// blockSafe reports whether every character of s survives a literal block:
// printable text, tabs and newlines only.
func blockSafe(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r != '\n' && r != '\t' && !unicode.IsPrint(r) && r != ' ' {
			return false
		}
	}
	return true
}

// quote double-quotes s; "" stays empty so the field is left out. Go's
// escapes are a subset of YAML's for valid UTF-8.
func quote(s string) string {
	if s == "" {
		return ""
	}
	return strconv.Quote(s)
}

// plain leaves s unquoted when YAML reads it back as the same string, as
// for names, sizes and CIDRs; otherwise it quotes it.
func plain(s string) string {
	if s == "" {
		return ""
	}
	if isPlainSafe(s) {
		var v any
		if err := yaml.Unmarshal([]byte(s), &v); err == nil && v == any(s) {
			return s
		}
	}
	return strconv.Quote(s)
}

func isPlainSafe(s string) bool {
	for i, r := range s {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' ||
			i > 0 && strings.ContainsRune("-_./+", r)
		if !ok {
			return false
		}
	}
	return true
}
