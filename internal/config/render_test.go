package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// The seed case: `slicer new sandbox --net=isolated --count=0
// --graceful-shutdown=false --drop 192.168.1.0/24`, as documented.
func TestRenderSandboxGolden(t *testing.T) {
	got, err := Render(NewOptions{
		Name:             "sandbox",
		Hypervisor:       "qemu",
		Net:              "isolated",
		Count:            new(0),
		GracefulShutdown: new(false),
		Drop:             []string{"192.168.1.0/24"},
	})
	if err != nil {
		t.Fatalf("Render() error = %v", err)
	}
	const want = `config:
  host_groups:
  - name: sandbox
    storage: image
    storage_size: 25G
    count: 0
    vcpu: 2
    ram_gb: 4
    network:
      mode: "isolated"
      drop: ["192.168.1.0/24"]
      allow: ["0.0.0.0/0"]
  image: "ghcr.io/openfaasltd/slicer-systemd:6.1.90-x86_64-latest"
  hypervisor: qemu
  graceful_shutdown: false
  api:
    port: 8080
    bind_address: "127.0.0.1"
    auth:
      enabled: true
`
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Render() mismatch (-want +got):\n%s", diff)
	}
}

// tail is the config text after the host group for a TCP API with auth on.
func tail(image, hypervisor string) string {
	return `  image: "` + image + `"
  hypervisor: ` + hypervisor + `
  api:
    port: 8080
    bind_address: "127.0.0.1"
    auth:
      enabled: true
`
}

func TestRender(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "init.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\n\n  echo hi\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		opts NewOptions
		want string
	}{{
		name: "bridge defaults, as slicer new vm",
		opts: NewOptions{Name: "vm", Hypervisor: "firecracker", GitHubUser: "alexellis"},
		want: `config:
  host_groups:
  - name: vm
    storage: image
    storage_size: 25G
    count: 1
    vcpu: 2
    ram_gb: 4
    network:
      bridge: brvm0
      tap_prefix: vmtap
      gateway: 192.168.137.1/24
  github_user: alexellis
` + tail(NewImage, "firecracker"),
	}, {
		name: "sizes, cidr and tap prefix",
		opts: NewOptions{
			Name: "build", Hypervisor: "qemu", Count: new(3), VCPU: 4, RAMGB: 8, StorageSize: "10G",
			Persistent: true, CIDR: "10.10.5.7/16", TapPrefix: "bt", DNS: []string{"1.1.1.1", "8.8.8.8"}, Min: true,
		},
		want: `config:
  host_groups:
  - name: build
    storage: image
    storage_size: 10G
    count: 3
    vcpu: 4
    ram_gb: 8
    persistent: true
    dns_servers: ["1.1.1.1", "8.8.8.8"]
    network:
      bridge: brbuild0
      tap_prefix: bt
      gateway: 10.10.0.1/16
` + tail("min", "qemu"),
	}, {
		name: "long name is cut to fit interface names",
		opts: NewOptions{Name: "averyveryverylongname", Hypervisor: "qemu", Image: "min"},
		want: `config:
  host_groups:
  - name: averyveryverylongname
    storage: image
    storage_size: 25G
    count: 1
    vcpu: 2
    ram_gb: 4
    network:
      bridge: braveryveryver0
      tap_prefix: averyvertap
      gateway: 192.168.137.1/24
` + tail("min", "qemu"),
	}, {
		name: "socket api, userdata file, allow list",
		opts: NewOptions{
			Name: "agent", Hypervisor: "qemu", Net: "isolated", Count: new(0), Allow: []string{"192.168.222.1:3128"},
			Drop: []string{"0.0.0.0/0"}, APIBind: "./slicer.sock", Min: true, UserdataFile: script,
		},
		want: `config:
  host_groups:
  - name: agent
    storage: image
    storage_size: 25G
    count: 0
    vcpu: 2
    ram_gb: 4
    userdata: |
      #!/bin/sh

        echo hi
    network:
      mode: "isolated"
      drop: ["0.0.0.0/0"]
      allow: ["192.168.222.1:3128"]
  image: "min"
  hypervisor: qemu
  api:
    port: 8080
    bind_address: "./slicer.sock"
`,
	}, {
		name: "tcp api with auth off and ssh keys",
		opts: NewOptions{
			Name: "vm", Hypervisor: "qemu", APIBind: "0.0.0.0", APIPort: 9000, APIAuth: new(false), Min: true,
			SSHKeys: []string{"ssh-ed25519 AAAA me@host"}, GracefulShutdown: new(true),
		},
		want: `config:
  host_groups:
  - name: vm
    storage: image
    storage_size: 25G
    count: 1
    vcpu: 2
    ram_gb: 4
    network:
      bridge: brvm0
      tap_prefix: vmtap
      gateway: 192.168.137.1/24
  ssh_keys:
  - "ssh-ed25519 AAAA me@host"
  image: "min"
  hypervisor: qemu
  api:
    port: 9000
    bind_address: "0.0.0.0"
    auth:
      enabled: false
`,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Render(tt.opts)
			if err != nil {
				t.Fatalf("Render() error = %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Render() mismatch (-want +got):\n%s", diff)
			}
			cfg, err := Parse("new.yaml", []byte(got))
			if err != nil {
				t.Fatalf("Parse(Render()) error = %v", err)
			}
			ApplyDefaults(cfg, "qemu")
			if err := Validate(cfg, ValidateOptions{}); err != nil {
				t.Errorf("Validate(Render()) = %v", err)
			}
		})
	}
}

func TestRenderUserdataIsInlinedExactly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "u.sh")
	const body = "#!/bin/bash\nset -e\n\tapt-get install -y nginx\n\n"
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := Render(NewOptions{Name: "vm", Hypervisor: "qemu", Min: true, UserdataFile: path})
	if err != nil {
		t.Fatalf("Render() error = %v", err)
	}
	cfg, err := Parse("new.yaml", []byte(out))
	if err != nil {
		t.Fatalf("Parse(Render()) error = %v\n%s", err, out)
	}
	if got := cfg.HostGroups[0].Userdata; got != body {
		t.Errorf("userdata = %q, want %q", got, body)
	}
}

func TestRenderErrors(t *testing.T) {
	base := func(mod func(*NewOptions)) NewOptions {
		o := NewOptions{Name: "vm", Hypervisor: "qemu"}
		mod(&o)
		return o
	}
	tests := []struct {
		name string
		opts NewOptions
		want []string
	}{
		{"cidr in isolated mode", base(func(o *NewOptions) { o.Net, o.CIDR = "isolated", "10.0.0.0/24" }),
			[]string{"--cidr applies to --net=bridge"}},
		{"drop in bridge mode", base(func(o *NewOptions) { o.Drop = []string{"10.0.0.0/8"} }),
			[]string{"--drop and --allow apply to --net=isolated"}},
		{"min and image", base(func(o *NewOptions) { o.Min, o.Image = true, "ghcr.io/x/y:1" }),
			[]string{`--min and --image "ghcr.io/x/y:1" conflict; give one`}},
		{"bad cidr", base(func(o *NewOptions) { o.CIDR = "10.0.0.0/31" }),
			[]string{`--cidr "10.0.0.0/31" is not an IPv4 CIDR with room for VMs (want e.g. 192.168.137.0/24)`,
				"config.host_groups[0].network.gateway: required in bridge mode (e.g. 192.168.137.1/24)"}},
		{"devmapper with a size", base(func(o *NewOptions) { o.Storage, o.StorageSize = "devmapper", "10G" }),
			[]string{"config.host_groups[0].storage_size: not allowed for storage: devmapper (the thin pool's base size applies)"}},
		{"macvtap", base(func(o *NewOptions) { o.Net = "macvtap" }),
			[]string{"config.host_groups[0].network.mode: macvtap networking is not supported yet; use bridge or isolated"}},
		{"bad drop", base(func(o *NewOptions) { o.Net, o.Drop = "isolated", []string{"lan"} }),
			[]string{`config.host_groups[0].network.drop[0]: "lan" is not a CIDR, IP or IP:port`}},
		{"name too long for isolated", base(func(o *NewOptions) { o.Name, o.Net = "sandbox-long", "isolated" }),
			[]string{`config.host_groups[0].name: "sandbox-long" is too long for isolated mode: VM names sandbox-long-N (N up to 4 digits) must be at most 15 characters; use at most 10`}},
		{"bad name and size", base(func(o *NewOptions) { o.Name, o.StorageSize = "", "lots" }),
			[]string{"config.host_groups[0].name: a host group name is required",
				`config.host_groups[0].storage_size: "lots" is not a size (want e.g. 25G, 512M)`}},
		{"no hypervisor", base(func(o *NewOptions) { o.Hypervisor = "" }),
			[]string{"config.hypervisor: required (one of qemu, firecracker, cloud-hypervisor)"}},
		{"bad api", base(func(o *NewOptions) { o.APIBind, o.APIPort = "localhost", 70000 }),
			[]string{"config.api.port: 70000 is not a TCP port (want 1 to 65535)",
				`config.api.bind_address: "localhost" is neither an IP address nor a socket path (want e.g. 127.0.0.1 or ./slicer.sock)`}},
		{"negative count", base(func(o *NewOptions) { o.Count = new(-1) }),
			[]string{"config.host_groups[0].count: must be 0 or more, got -1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := Render(tt.opts)
			if out != "" {
				t.Errorf("Render() output = %q, want none", out)
			}
			if diff := cmp.Diff(tt.want, messages(err)); diff != "" {
				t.Errorf("Render() errors mismatch (-want +got):\n%s", diff)
			}
		})
	}

	_, err := Render(NewOptions{Name: "vm", Hypervisor: "qemu", UserdataFile: filepath.Join(t.TempDir(), "absent")})
	if err == nil || !strings.HasPrefix(err.Error(), "read --userdata-file: ") {
		t.Errorf("Render(missing userdata file) error = %v", err)
	}
}

// Format writes what Parse reads back, for awkward strings too.
func TestFormatRoundTrip(t *testing.T) {
	userdata := []string{
		"echo hi\n",
		"no trailing newline",
		"two trailing\n\n",
		"  leading space\nnext\n",
		"\n\nleading blank lines\n",
		"tab\tinside\n\tand leading\n",
		"has \r carriage return\n",
		"# looks like a comment\n---\n...\n",
		"unicode ✓ and \u2028 separator\n",
		"   \n",
		"\n",
	}
	for _, u := range userdata {
		cfg := &Config{
			HostGroups: []HostGroup{{
				Name: "true", Count: new(2), RamBytes: 1 << 30, Userdata: u, UserdataFile: "x: y.sh",
				KernelArgs: `console=ttyS1 "quoted" #x`,
				Network:    &Network{Mode: "bridge", Range: "10.0.0.2-10.0.0.9", Addresses: []string{"10.0.0.3"}},
			}},
			SSHKeys:     []string{"ssh-rsa \"quoted\" key"},
			KernelImage: "k", KernelFile: "/boot/vmlinuz", Hypervisor: "cloud-hypervisor",
			GitHubUser: "null", InsecureRegistry: true, BootWatchdog: "1m30s",
			API: API{BindAddress: "/run/slicer/api.sock", Auth: Auth{Token: "#secret: x"}},
		}
		text := Format(cfg)
		got, err := Parse("f.yaml", []byte(text))
		if err != nil {
			t.Errorf("Parse(Format()) error = %v\n%s", err, text)
			continue
		}
		if diff := cmp.Diff(cfg, got, ignoreSource); diff != "" {
			t.Errorf("Parse(Format()) mismatch for userdata %q (-want +got):\n%s\n%s", u, diff, text)
		}
	}
}
