package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// messages lists the joined errors in err, one string each.
func messages(err error) []string {
	if err == nil {
		return nil
	}
	var out []string
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			out = append(out, messages(e)...)
		}
		return out
	}
	return []string{err.Error()}
}

// yamlText joins lines into a file, so tests can count lines.
func yamlText(lines ...string) string {
	return strings.Join(lines, "\n") + "\n"
}

// seedYAML is the two-group example from the Slicer docs.
const seedYAML = `config:
  host_groups:
  # One persistent, always-on VM created at daemon start.
  - name: ctrl
    storage: image
    storage_size: 25G
    count: 1
    vcpu: 4
    ram_gb: 8
    userdata: |
      apt-get update -qy
      apt-get install -qy nginx postgresql
    network:
      bridge: brctrl0
      tap_prefix: ctrl
      gateway: 192.168.137.1/24
  - name: sbox
    storage: image
    storage_size: 25G
    count: 0
    vcpu: 2
    ram_gb: 4
    network:
      mode: "isolated"
      drop: []
      allow: ["0.0.0.0/0"]
  image: "ghcr.io/openfaasltd/slicer-systemd-min:6.1.90-x86_64-latest"
  hypervisor: firecracker
  api:
    port: 8080
    bind_address: "127.0.0.1"
    auth:
      enabled: true
`

func TestParseSeed(t *testing.T) {
	cfg, err := Parse("slicer.yaml", []byte(seedYAML))
	if err != nil {
		t.Fatalf("Parse() error = %v", err)
	}
	want := &Config{
		HostGroups: []HostGroup{{
			Name: "ctrl", Storage: "image", StorageSize: "25G", Count: new(1), VCPU: 4, RamGB: 8,
			Userdata: "apt-get update -qy\napt-get install -qy nginx postgresql\n",
			Network:  &Network{Bridge: "brctrl0", TapPrefix: "ctrl", Gateway: "192.168.137.1/24"},
		}, {
			Name: "sbox", Storage: "image", StorageSize: "25G", Count: new(0), VCPU: 2, RamGB: 4,
			Network: &Network{Mode: "isolated", Drop: []string{}, Allow: []string{"0.0.0.0/0"}},
		}},
		Image:      "ghcr.io/openfaasltd/slicer-systemd-min:6.1.90-x86_64-latest",
		Hypervisor: "firecracker",
		API:        API{Port: 8080, BindAddress: "127.0.0.1", Auth: Auth{Enabled: new(true)}},
	}
	if diff := cmp.Diff(want, cfg, cmpopts.IgnoreFields(Config{}, "Source")); diff != "" {
		t.Errorf("Parse() mismatch (-want +got):\n%s", diff)
	}
	for path, line := range map[string]int{
		"config.host_groups[0]":              4,
		"config.host_groups[0].vcpu":         8,
		"config.host_groups[1].network.mode": 24,
		"config.api.auth.enabled":            33,
		"config.host_groups[1].missing":      17, // falls back to the group
	} {
		if got := cfg.Source.Line(path); got != line {
			t.Errorf("Source.Line(%q) = %d, want %d", path, got, line)
		}
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
	}{{
		name: "unknown top-level key",
		in:   yamlText("config:", "  host_groups: []", "  hypervisr: qemu"),
		want: []string{`f.yaml:3: config.hypervisr: unknown key (want one of api, boot_watchdog, github_user, graceful_shutdown, host_groups, hypervisor, image, insecure_registry, kernel_file, kernel_image, memory_budget, ssh_keys)`},
	}, {
		name: "unknown key in network",
		in:   yamlText("config:", "  host_groups:", "  - name: a", "    network:", "      gw: 10.0.0.1/24"),
		want: []string{`f.yaml:5: config.host_groups[0].network.gw: unknown key (want one of addresses, allow, bridge, drop, gateway, mode, range, tap_prefix)`},
	}, {
		name: "key outside config",
		in:   yamlText("confg:", "  host_groups: []"),
		want: []string{
			`f.yaml:1: confg: unknown key (want one of config)`,
			`f.yaml:1: config: missing; every setting lives under a top-level config: key`,
		},
	}, {
		name: "documented but unsupported key",
		in:   yamlText("config:", "  ssh:", "    port: 2222"),
		want: []string{`f.yaml:2: config.ssh: not supported by this daemon`},
	}, {
		name: "duplicate key",
		in:   yamlText("config:", "  image: min", "  image: other"),
		want: []string{`f.yaml:3: config.image: duplicate key (first set at line 2)`},
	}, {
		name: "wrong scalar types",
		in:   yamlText("config:", "  host_groups:", "  - name: a", "    count: lots", "    persistent: 1", "  api:", "    port: [8080]"),
		want: []string{
			`f.yaml:4: config.host_groups[0].count: want a whole number, got "lots"`,
			`f.yaml:5: config.host_groups[0].persistent: want true or false, got "1"`,
			`f.yaml:7: config.api.port: want a whole number, got a list`,
		},
	}, {
		name: "mapping where a list belongs",
		in:   yamlText("config:", "  host_groups:", "    name: a"),
		want: []string{`f.yaml:2: config.host_groups: want a list, got a mapping`},
	}, {
		name: "list where a mapping belongs",
		in:   yamlText("config:", "  api: [1]"),
		want: []string{`f.yaml:2: config.api: want a mapping of keys, got a list`},
	}, {
		name: "syntax error",
		in:   yamlText("config:", "  host_groups:", "\t- name: a"),
		want: []string{`f.yaml:3: found character that cannot start any token`},
	}, {
		name: "empty file",
		in:   "# nothing\n",
		want: []string{`f.yaml: the file is empty; want a top-level config: mapping`},
	}, {
		name: "not a mapping",
		in:   "- a\n",
		want: []string{`f.yaml:1: want a top-level config: mapping`},
	}, {
		name: "two documents",
		in:   yamlText("config: {}", "---", "config: {}"),
		want: []string{`f.yaml:2: a second YAML document; want exactly one`},
	}, {
		name: "type error through an alias is cited where the alias is used",
		in:   yamlText("config:", "  image: &x [1]", "  hypervisor: *x"),
		want: []string{
			`f.yaml:2: config.image: want a string, got a list`,
			`f.yaml:3: config.hypervisor: want a string, got a list`,
		},
	}, {
		name: "unsupported key at the wrong level is unknown",
		in:   yamlText("config:", "  api:", "    ca: {}"),
		want: []string{`f.yaml:3: config.api.ca: unknown key (want one of auth, bind_address, port)`},
	}, {
		name: "merge keys",
		in:   yamlText("config:", "  api:", "    <<: {port: 1}"),
		want: []string{`f.yaml:3: config.api: keys must be plain names (merge keys << are not supported)`},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse("f.yaml", []byte(tt.in))
			if cfg != nil {
				t.Errorf("Parse() config = %+v, want nil", cfg)
			}
			if diff := cmp.Diff(tt.want, messages(err)); diff != "" {
				t.Errorf("Parse() errors mismatch (-want +got):\n%s", diff)
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.File != "f.yaml" {
				t.Errorf("Parse() error %v is not a *FieldError for f.yaml", err)
			}
		})
	}
}

func TestParseNullsAndAliases(t *testing.T) {
	in := yamlText(
		"config:",
		"  host_groups:",
		"  - name: &n web",
		"    count:",
		"    network: ~",
		"    dns_servers: [*n]",
	)
	cfg, err := Parse("f.yaml", []byte(in))
	if err != nil {
		t.Fatalf("Parse() error = %v", err)
	}
	g := cfg.HostGroups[0]
	if g.Count != nil || g.Network != nil {
		t.Errorf("null count/network decoded as %v/%v, want nil", g.Count, g.Network)
	}
	if diff := cmp.Diff([]string{"web"}, g.DNSServers); diff != "" {
		t.Errorf("alias decode mismatch (-want +got):\n%s", diff)
	}
	if got := cfg.Source.Line("config.host_groups[0].dns_servers[0]"); got != 6 {
		t.Errorf("alias line = %d, want 6 (where the alias is used)", got)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()

	_, err := Load(filepath.Join(dir, "absent.yaml"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load(absent) error = %v, want fs.ErrNotExist", err)
	}

	path := filepath.Join(dir, "slicer.yaml")
	if err := os.WriteFile(path, []byte(yamlText("config:", "  bogus: 1")), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Load(path)
	if err == nil || errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load(bad) error = %v, want a non-ErrNotExist error", err)
	}
	if want := path + ":2: config.bogus: unknown key"; !strings.HasPrefix(err.Error(), want) {
		t.Errorf("Load(bad) error = %q, want prefix %q", err, want)
	}

	if err := os.WriteFile(path, []byte(seedYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path)
	if err != nil {
		t.Fatalf("Load(seed) error = %v", err)
	}
	if cfg.Source.File != path || len(cfg.HostGroups) != 2 {
		t.Errorf("Load(seed) = file %q, %d groups; want %q, 2", cfg.Source.File, len(cfg.HostGroups), path)
	}
}
