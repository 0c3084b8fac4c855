package image

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// debianCloud61 is the depends= graph of the wanted modules in Debian's
// 6.1.0-56-cloud-amd64 kernel.
var debianCloud61 = map[string][]string{
	"virtio_ring":                       nil,
	"virtio":                            {"virtio_ring"},
	"virtio_mmio":                       {"virtio", "virtio_ring"},
	"virtio_console":                    {"virtio", "virtio_ring"},
	"virtio_blk":                        {"virtio", "virtio_ring"},
	"virtio_rng":                        {"virtio", "virtio_ring"},
	"failover":                          nil,
	"net_failover":                      {"failover"},
	"virtio_net":                        {"virtio_ring", "virtio", "net_failover"},
	"vsock":                             nil,
	"vmw_vsock_virtio_transport_common": {"vsock"},
	"vmw_vsock_virtio_transport":        {"virtio", "vmw_vsock_virtio_transport_common", "virtio_ring", "vsock"},
}

func TestLoadOrder(t *testing.T) {
	tests := []struct {
		name    string
		mods    map[string][]string
		want    []string
		order   []string
		wantErr string
	}{
		{
			name: "debian cloud kernel",
			mods: debianCloud61,
			want: initramfsModules,
			order: []string{"virtio_ring", "virtio", "virtio_mmio", "virtio_console", "virtio_blk", "virtio_rng",
				"failover", "net_failover", "virtio_net", "vsock", "vmw_vsock_virtio_transport_common", "vmw_vsock_virtio_transport"},
		},
		{
			name:  "dependencies first whatever order want gives",
			mods:  debianCloud61,
			want:  []string{"virtio_net", "virtio_ring"},
			order: []string{"virtio_ring", "virtio", "failover", "net_failover", "virtio_net"},
		},
		{
			name:  "dependency not asked for is added",
			mods:  map[string][]string{"virtio_rng": {"rng_core"}, "rng_core": nil},
			want:  []string{"virtio_rng"},
			order: []string{"rng_core", "virtio_rng"},
		},
		{
			name:  "diamond loads shared dependency once",
			mods:  map[string][]string{"a": {"b", "c"}, "b": {"d"}, "c": {"d"}, "d": nil},
			want:  []string{"a"},
			order: []string{"d", "b", "c", "a"},
		},
		{
			name:  "empty want",
			mods:  debianCloud61,
			order: nil,
		},
		{
			name:    "missing dependency names who needs it",
			mods:    map[string][]string{"virtio": {"virtio_ring"}},
			want:    []string{"virtio"},
			wantErr: `module "virtio_ring" (needed by "virtio") not found`,
		},
		{
			name:    "missing wanted module",
			mods:    map[string][]string{},
			want:    []string{"virtio"},
			wantErr: `module "virtio" not found`,
		},
		{
			name:    "cycle",
			mods:    map[string][]string{"a": {"b"}, "b": {"c"}, "c": {"a"}},
			want:    []string{"a"},
			wantErr: "module dependency cycle: a -> b -> c -> a",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := loadOrder(tt.mods, tt.want)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("loadOrder() error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("loadOrder() error = %v", err)
			}
			if diff := cmp.Diff(tt.order, got); diff != "" {
				t.Errorf("loadOrder() (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseModinfo(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{"several", "license=GPL\x00depends=virtio,virtio_ring\x00name=virtio_net\x00", []string{"virtio", "virtio_ring"}},
		{"empty depends", "depends=\x00name=virtio_ring\x00", nil},
		{"no depends key", "name=x\x00", nil},
		{"dashes become underscores", "depends=rng-core\x00", []string{"rng_core"}},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, parseModinfo([]byte(tt.in))); diff != "" {
			t.Errorf("%s: parseModinfo() (-want +got):\n%s", tt.name, diff)
		}
	}
}

func TestModuleName(t *testing.T) {
	for in, want := range map[string]string{
		"/x/kernel/drivers/char/hw_random/virtio-rng.ko": "virtio_rng",
		"virtio_ring.ko": "virtio_ring",
		"rng-core":       "rng_core",
	} {
		if got := moduleName(in); got != want {
			t.Errorf("moduleName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestInitramfsEntries(t *testing.T) {
	es := initramfsEntries("/host/agent", []string{"/k/virtio_ring.ko", "/k/virtio-rng.ko"})
	byPath := map[string]entry{}
	var paths []string
	for _, e := range es {
		byPath[e.Path] = e
		paths = append(paths, e.Path)
	}
	want := []string{"dev", "dev/console", "proc", "sys", "newroot", "lib", "lib/modules", "init",
		"lib/modules/virtio_ring.ko", "lib/modules/virtio_rng.ko", "lib/modules/load.order"}
	if diff := cmp.Diff(want, paths); diff != "" {
		t.Errorf("initramfs paths (-want +got):\n%s", diff)
	}
	if got := string(byPath["lib/modules/load.order"].Data); got != "/lib/modules/virtio_ring.ko\n/lib/modules/virtio_rng.ko\n" {
		t.Errorf("load.order = %q", got)
	}
	if e := byPath["init"]; e.Src != "/host/agent" || e.Mode != 0o755 {
		t.Errorf("init = %+v, want the agent with mode 0755", e)
	}
	if e := byPath["dev/console"]; e.Major != 5 || e.Minor != 1 {
		t.Errorf("dev/console = %d:%d, want 5:1", e.Major, e.Minor)
	}
}
