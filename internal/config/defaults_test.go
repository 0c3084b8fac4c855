package config

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

var ignoreSource = cmpopts.IgnoreFields(Config{}, "Source")

func TestApplyDefaults(t *testing.T) {
	tests := []struct {
		name string
		in   *Config
		want *Config
		opts []cmp.Option
	}{{
		name: "everything left out",
		in:   &Config{HostGroups: []HostGroup{{Name: "vm"}}},
		want: &Config{
			HostGroups: []HostGroup{{Name: "vm", Count: new(1), VCPU: 2, RamGB: 4, Storage: "image", StorageSize: "25G"}},
			Image:      "min", Hypervisor: "qemu", GracefulShutdown: new(true),
			API: API{Port: 8080, BindAddress: "127.0.0.1", Auth: Auth{Enabled: new(true)}},
		},
	}, {
		name: "explicit values kept",
		in: &Config{
			HostGroups: []HostGroup{{Name: "vm", Count: new(0), VCPU: 8, RamMB: 512, Storage: "devmapper"}},
			Image:      "other", Hypervisor: "firecracker", GracefulShutdown: new(false),
			API: API{Port: 9090, BindAddress: "0.0.0.0", Auth: Auth{Enabled: new(false)}},
		},
		want: &Config{
			HostGroups: []HostGroup{{Name: "vm", Count: new(0), VCPU: 8, RamMB: 512, Storage: "devmapper"}},
			Image:      "other", Hypervisor: "firecracker", GracefulShutdown: new(false),
			API: API{Port: 9090, BindAddress: "0.0.0.0", Auth: Auth{Enabled: new(false)}},
		},
	}, {
		name: "socket bind turns auth off",
		in:   &Config{API: API{BindAddress: "./slicer.sock"}},
		want: &Config{
			Image: "min", Hypervisor: "qemu", GracefulShutdown: new(true),
			API: API{Port: 8080, BindAddress: "./slicer.sock", Auth: Auth{Enabled: new(false)}},
		},
	}, {
		name: "bridge network names",
		in: &Config{HostGroups: []HostGroup{
			{Name: "vm", Network: &Network{Gateway: "10.0.0.1/24"}},
			{Name: "averyveryverylongname", Network: &Network{Mode: "bridge", Gateway: "10.0.1.1/24"}},
			{Name: "own", Network: &Network{Bridge: "brx", TapPrefix: "tx", Gateway: "10.0.2.1/24"}},
			{Name: "iso", Network: &Network{Mode: "isolated"}},
		}},
		want: &Config{
			HostGroups: []HostGroup{
				{Name: "vm", Network: &Network{Mode: "bridge", Bridge: "brvm0", TapPrefix: "vmtap", Gateway: "10.0.0.1/24"}},
				{Name: "averyveryverylongname", Network: &Network{Mode: "bridge", Bridge: "braveryveryver0", TapPrefix: "averyvertap", Gateway: "10.0.1.1/24"}},
				{Name: "own", Network: &Network{Mode: "bridge", Bridge: "brx", TapPrefix: "tx", Gateway: "10.0.2.1/24"}},
				{Name: "iso", Network: &Network{Mode: "isolated"}},
			},
			Image: "min", Hypervisor: "qemu", GracefulShutdown: new(true),
			API: API{Port: 8080, BindAddress: "127.0.0.1", Auth: Auth{Enabled: new(true)}},
		},
		// Group defaults shown by the first case are not repeated here.
		opts: []cmp.Option{cmpopts.IgnoreFields(HostGroup{}, "Count", "VCPU", "RamGB", "Storage", "StorageSize")},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ApplyDefaults(tt.in, "qemu")
			if diff := cmp.Diff(tt.want, tt.in, tt.opts...); diff != "" {
				t.Errorf("ApplyDefaults() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDefault(t *testing.T) {
	cfg := Default("qemu")
	applied := Default("qemu")
	ApplyDefaults(applied, "firecracker")
	if diff := cmp.Diff(cfg, applied); diff != "" {
		t.Errorf("ApplyDefaults(Default()) changed it (-before +after):\n%s", diff)
	}
	if err := Validate(cfg, ValidateOptions{}); err != nil {
		t.Errorf("Validate(Default()) = %v", err)
	}
	g := cfg.HostGroups[0]
	if g.Name != "sandbox" || g.VMCount() != 0 || g.RAMBytes() != 2<<30 || g.Network != nil || cfg.Graceful() || !cfg.API.AuthEnabled() {
		t.Errorf("Default() = %+v, group %+v", cfg, g)
	}

	text := DefaultYAML("qemu")
	parsed, err := Parse("default", []byte(text))
	if err != nil {
		t.Fatalf("Parse(DefaultYAML()) error = %v\n%s", err, text)
	}
	if diff := cmp.Diff(cfg, parsed, ignoreSource); diff != "" {
		t.Errorf("Parse(DefaultYAML()) mismatch (-want +got):\n%s", diff)
	}
}

func TestRAMBytes(t *testing.T) {
	tests := []struct {
		g    HostGroup
		want int64
	}{
		{HostGroup{RamGB: 4}, 4 << 30},
		{HostGroup{RamMB: 512}, 512 << 20},
		{HostGroup{RamBytes: 1 << 30}, 1 << 30},
		{HostGroup{}, 0},
	}
	for _, tt := range tests {
		if got := tt.g.RAMBytes(); got != tt.want {
			t.Errorf("%+v.RAMBytes() = %d, want %d", tt.g, got, tt.want)
		}
	}
}

func TestAPIMethods(t *testing.T) {
	tests := []struct {
		api        API
		socket     bool
		authEnable bool
	}{
		{API{BindAddress: "127.0.0.1"}, false, true},
		{API{BindAddress: "0.0.0.0"}, false, true},
		{API{BindAddress: "::1"}, false, true},
		{API{BindAddress: "/run/slicer/slicer.sock"}, true, false},
		{API{BindAddress: "./slicer.sock"}, true, false},
		{API{BindAddress: "../x"}, true, false},
		{API{BindAddress: "api.sock"}, true, false},
		{API{BindAddress: "./slicer.sock", Auth: Auth{Enabled: new(true)}}, true, true},
		{API{BindAddress: "127.0.0.1", Auth: Auth{Enabled: new(false)}}, false, false},
	}
	for _, tt := range tests {
		if got := tt.api.IsUnixSocket(); got != tt.socket {
			t.Errorf("%+v.IsUnixSocket() = %t, want %t", tt.api, got, tt.socket)
		}
		if got := tt.api.AuthEnabled(); got != tt.authEnable {
			t.Errorf("%+v.AuthEnabled() = %t, want %t", tt.api, got, tt.authEnable)
		}
	}
}

func TestGroupMethods(t *testing.T) {
	if got := (Config{}).Graceful(); !got {
		t.Errorf("Config{}.Graceful() = false, want true by default")
	}
	if got := (Config{GracefulShutdown: new(false)}).Graceful(); got {
		t.Errorf("Graceful() with graceful_shutdown: false = true")
	}
	g := HostGroup{Name: "web", StorageSize: "512M"}
	if g.VMCount() != 1 || g.Hostname(3) != "web-3" {
		t.Errorf("VMCount() = %d, Hostname(3) = %q; want 1, web-3", g.VMCount(), g.Hostname(3))
	}
	if n, err := g.StorageBytes(); err != nil || n != 512<<20 {
		t.Errorf("StorageBytes() = %d, %v; want %d", n, err, 512<<20)
	}
}
