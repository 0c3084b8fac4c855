package config

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// groupDoc is a config file with one host group "vm" on qemu; the given
// lines belong to the group and start at line 4.
func groupDoc(lines ...string) string {
	out := []string{"config:", "  host_groups:", "  - name: vm"}
	for _, l := range lines {
		out = append(out, "    "+l)
	}
	return yamlText(append(out, "  hypervisor: qemu")...)
}

// validateText parses, defaults and validates a file named slicer.yaml.
func validateText(t *testing.T, text string, opts ValidateOptions) []string {
	t.Helper()
	cfg, err := Parse("slicer.yaml", []byte(text))
	if err != nil {
		t.Fatalf("Parse() error = %v", err)
	}
	ApplyDefaults(cfg, "qemu")
	return messages(Validate(cfg, opts))
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "init.sh"), []byte("echo hi\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	inDir := ValidateOptions{BaseDir: dir}
	const g0 = "slicer.yaml:%d: config.host_groups[0]."
	at := func(line int, rest string) string {
		return fmt.Sprintf(g0, line) + rest
	}

	tests := []struct {
		name string
		doc  string
		opts ValidateOptions
		want []string
	}{
		{name: "minimal group is valid", doc: groupDoc()},
		{name: "full bridge group is valid", doc: groupDoc(
			"count: 3", "vcpu: 4", "ram_mb: 2048", "storage_size: 10G", "userdata_file: init.sh",
			`dns_servers: ["1.1.1.1", "2606:4700::1111"]`,
			"network:", "  gateway: 10.1.0.1/24", "  range: 10.1.0.10-10.1.0.50", `  addresses: ["10.1.0.5", "10.1.0.6/24"]`,
		), opts: inDir},
		{name: "isolated group with rules is valid", doc: groupDoc(
			"network:", "  mode: isolated", "  range: 169.254.100.0/22",
			`  drop: ["0.0.0.0/0", "10.0.0.1"]`, `  allow: ["192.168.222.1:3128", "10.0.0.0/8:443", "[fd00::1]:53"]`,
		)},
		{name: "socket api is valid", doc: groupDoc() + yamlText("  api:", "    bind_address: ./slicer.sock")},

		{name: "no host groups", doc: yamlText("config:", "  hypervisor: qemu"),
			want: []string{"slicer.yaml:1: config.host_groups: at least one host group is required"}},
		{name: "name missing", doc: yamlText("config:", "  host_groups:", "  - vcpu: 2", "  hypervisor: qemu"),
			want: []string{at(3, "name: a host group name is required")}},
		{name: "name not a label", doc: strings.Replace(groupDoc(), "name: vm", "name: Web_1", 1),
			want: []string{at(3, `name: "Web_1" is not a valid name: use lowercase letters, digits and '-', starting and ending with a letter or digit`)}},
		{name: "name too long for hostnames", doc: strings.Replace(groupDoc(), "name: vm", "name: "+strings.Repeat("a", 59), 1),
			want: []string{at(3, `name: "`+strings.Repeat("a", 59)+`" is too long: VM hostnames `+strings.Repeat("a", 59)+`-N must fit in 63 characters with room for 4 digits of N`)}},
		{name: "duplicate names", doc: yamlText("config:", "  host_groups:", "  - name: vm", "  - name: vm", "  hypervisor: qemu"),
			want: []string{`slicer.yaml:4: config.host_groups[1].name: "vm" is already the name of host_groups[0]`}},

		{name: "two ram settings", doc: groupDoc("ram_gb: 4", "ram_mb: 4096"),
			want: []string{at(5, "ram_mb: set only one of ram_gb, ram_mb and ram_bytes (found ram_gb and ram_mb)")}},
		{name: "negative ram", doc: groupDoc("ram_gb: -1"),
			want: []string{at(4, "ram_gb: must be positive, got -1")}},
		{name: "ram too small", doc: groupDoc("ram_mb: 32"),
			want: []string{at(4, "ram_mb: 33554432 bytes of RAM is below the minimum of 64M")}},
		{name: "ram_bytes not whole MiB", doc: groupDoc("ram_bytes: 1073741825"),
			want: []string{at(4, "ram_bytes: must be a whole number of MiB (multiple of 1048576), got 1073741825")}},
		{name: "vcpu below one", doc: groupDoc("vcpu: -1"),
			want: []string{at(4, "vcpu: must be at least 1, got -1")}},
		{name: "negative count", doc: groupDoc("count: -2"),
			want: []string{at(4, "count: must be 0 or more, got -2")}},

		{name: "devmapper storage", doc: groupDoc("storage: devmapper")},
		{name: "devmapper storage with a size", doc: groupDoc("storage: devmapper", "storage_size: 10G"),
			want: []string{at(5, "storage_size: not allowed for storage: devmapper (the thin pool's base size applies)")}},
		{name: "zfs storage without a size", doc: groupDoc("storage: zfs")},
		{name: "zfs storage bad size", doc: groupDoc("storage: zfs", "storage_size: big"),
			want: []string{at(5, `storage_size: "big" is not a size (want e.g. 25G, 512M)`)}},
		{name: "unknown storage", doc: groupDoc("storage: nfs"),
			want: []string{at(4, `storage: "nfs" is not a storage type (want image, devmapper or zfs)`)}},
		{name: "bad storage size", doc: groupDoc("storage_size: 25Q"),
			want: []string{at(4, `storage_size: "25Q" is not a size (want e.g. 25G, 512M)`)}},
		{name: "storage size too small", doc: groupDoc("storage_size: 32M"),
			want: []string{at(4, `storage_size: "32M" is below the minimum of 64M`)}},

		{name: "userdata and userdata_file", doc: groupDoc("userdata: echo", "userdata_file: init.sh"), opts: inDir,
			want: []string{at(5, "userdata_file: set userdata or userdata_file, not both")}},
		{name: "userdata_file missing", doc: groupDoc("userdata_file: nope.sh"), opts: inDir,
			want: []string{at(4, "userdata_file: stat "+filepath.Join(dir, "nope.sh")+": no such file or directory")}},
		{name: "userdata_file is a directory", doc: groupDoc("userdata_file: " + dir),
			want: []string{at(4, "userdata_file: "+dir+" is not a regular file")}},
		{name: "bad dns server", doc: groupDoc(`dns_servers: ["1.1.1.1", "dns.google"]`),
			want: []string{at(4, `dns_servers[1]: "dns.google" is not an IP address`)}},
		{name: "gpus", doc: groupDoc("gpu_count: 1"),
			want: []string{at(4, "gpu_count: GPU passthrough is not supported yet")}},

		{name: "macvtap", doc: groupDoc("network:", "  mode: macvtap"),
			want: []string{at(5, "network.mode: macvtap networking is not supported yet; use bridge or isolated")}},
		{name: "unknown mode", doc: groupDoc("network:", "  mode: nat"),
			want: []string{at(5, `network.mode: "nat" is not a network mode (want bridge or isolated)`)}},
		{name: "bridge without gateway", doc: groupDoc("network:", "  bridge: br0"),
			want: []string{at(4, "network.gateway: required in bridge mode (e.g. 192.168.137.1/24)")}},
		{name: "gateway is the network address", doc: groupDoc("network:", "  gateway: 192.168.137.0/24"),
			want: []string{at(5, `network.gateway: "192.168.137.0/24" is a network or broadcast address; want a host address such as 192.168.137.1/24`)}},
		{name: "gateway is the broadcast address", doc: groupDoc("network:", "  gateway: 192.168.137.255/24"),
			want: []string{at(5, `network.gateway: "192.168.137.255/24" is a network or broadcast address; want a host address such as 192.168.137.1/24`)}},
		{name: "gateway not a CIDR", doc: groupDoc("network:", "  gateway: 192.168.137.1"),
			want: []string{at(5, `network.gateway: "192.168.137.1" is not an IPv4 CIDR with room for VMs (want e.g. 192.168.137.1/24)`)}},
		{name: "gateway too narrow", doc: groupDoc("network:", "  gateway: 10.0.0.1/31"),
			want: []string{at(5, `network.gateway: "10.0.0.1/31" is not an IPv4 CIDR with room for VMs (want e.g. 192.168.137.1/24)`)}},
		{name: "bad range", doc: groupDoc("network:", "  gateway: 10.0.0.1/24", "  range: 10.0.0.5"),
			want: []string{at(6, `network.range: "10.0.0.5" is not an address range (want e.g. 192.168.137.10-192.168.137.50)`)}},
		{name: "range backwards", doc: groupDoc("network:", "  gateway: 10.0.0.1/24", "  range: 10.0.0.9-10.0.0.5"),
			want: []string{at(6, `network.range: "10.0.0.9-10.0.0.5" ends before it starts`)}},
		{name: "range outside", doc: groupDoc("network:", "  gateway: 10.0.0.1/24", "  range: 10.0.0.5-10.0.1.5"),
			want: []string{at(6, `network.range: "10.0.0.5-10.0.1.5" is not inside the gateway's host addresses 10.0.0.0/24`)}},
		{name: "range includes gateway", doc: groupDoc("network:", "  gateway: 10.0.0.7/24", "  range: 10.0.0.5-10.0.0.9"),
			want: []string{at(6, `network.range: "10.0.0.5-10.0.0.9" includes the gateway 10.0.0.7`)}},
		{name: "bad addresses", doc: groupDoc("network:", "  gateway: 10.0.0.1/24", `  addresses: ["x", "10.0.1.2", "10.0.0.1", "10.0.0.3", "10.0.0.3"]`),
			want: []string{
				at(6, `network.addresses[0]: "x" is not an IP address`),
				at(6, `network.addresses[1]: 10.0.1.2 is not a free host address in the gateway's network 10.0.0.0/24`),
				at(6, `network.addresses[2]: 10.0.0.1 is not a free host address in the gateway's network 10.0.0.0/24`),
				at(6, `network.addresses[4]: 10.0.0.3 is listed twice`),
			}},
		{name: "rules in bridge mode", doc: groupDoc("network:", "  gateway: 10.0.0.1/24", "  drop: []"),
			want: []string{at(6, "network.drop: only used in isolated mode")}},
		{name: "bridge name too long", doc: groupDoc("network:", "  bridge: br-much-too-long0", "  gateway: 10.0.0.1/24"),
			want: []string{at(5, `network.bridge: "br-much-too-long0" is longer than 15 characters`)}},
		{name: "tap prefix too long", doc: groupDoc("network:", "  tap_prefix: tap-much-toolong", "  gateway: 10.0.0.1/24"),
			want: []string{at(5, `network.tap_prefix: "tap-much-toolong" is longer than 14 characters`)}},
		{name: "isolated name too long", doc: strings.Replace(groupDoc("network:", "  mode: isolated"), "name: vm", "name: sandbox-long", 1),
			want: []string{at(3, `name: "sandbox-long" is too long for isolated mode: VM names sandbox-long-N (N up to 4 digits) must be at most 15 characters; use at most 10`)}},
		{name: "isolated bad rules", doc: groupDoc("network:", "  mode: isolated", `  drop: ["192.168.1.0/24", "lan"]`, `  allow: ["1.1.1.1:0"]`),
			want: []string{
				at(6, `network.drop[1]: "lan" is not a CIDR, IP or IP:port`),
				at(7, `network.allow[0]: "1.1.1.1:0" is not a CIDR, IP or IP:port`),
			}},
		{name: "isolated range", doc: groupDoc("network:", "  mode: isolated", "  range: 169.254.100.1/22"),
			want: []string{at(6, `network.range: "169.254.100.1/22" is not a network address (want 169.254.100.0/22)`)}},
		{name: "isolated with gateway", doc: groupDoc("network:", "  mode: isolated", "  gateway: 10.0.0.1/24"),
			want: []string{at(6, "network.gateway: only used in bridge mode")}},

		{name: "groups share a bridge and overlap", doc: yamlText("config:", "  host_groups:",
			"  - name: a", "    network:", "      bridge: br0", "      gateway: 10.0.0.1/16",
			"  - name: b", "    network:", "      bridge: br0", "      gateway: 10.0.5.1/24",
			"  hypervisor: qemu"),
			want: []string{
				`slicer.yaml:9: config.host_groups[1].network.bridge: "br0" is also used by host_groups[0]`,
				`slicer.yaml:10: config.host_groups[1].network.gateway: 10.0.5.0/24 overlaps host_groups[0]'s network 10.0.0.0/16`,
			}},

		{name: "api port", doc: groupDoc() + yamlText("  api:", "    port: 70000"),
			want: []string{"slicer.yaml:6: config.api.port: 70000 is not a TCP port (want 1 to 65535)"}},
		{name: "api bind address", doc: groupDoc() + yamlText("  api:", "    bind_address: localhost"),
			want: []string{`slicer.yaml:6: config.api.bind_address: "localhost" is neither an IP address nor a socket path (want e.g. 127.0.0.1 or ./slicer.sock)`}},
		{name: "unknown hypervisor", doc: strings.Replace(groupDoc(), "qemu", "vmware", 1),
			want: []string{`slicer.yaml:4: config.hypervisor: "vmware" is not a hypervisor (want one of qemu, firecracker, cloud-hypervisor)`}},
		{name: "hypervisor cannot run", doc: strings.Replace(groupDoc(), "qemu", "firecracker", 1),
			opts: ValidateOptions{CanRun: func(h string) error {
				if h == "firecracker" {
					return errors.New("/dev/kvm is missing; use hypervisor: qemu")
				}
				return nil
			}},
			want: []string{"slicer.yaml:4: config.hypervisor: firecracker cannot run here: /dev/kvm is missing; use hypervisor: qemu"}},
		{name: "OCI image", doc: groupDoc() + yamlText(`  image: "ghcr.io/openfaasltd/slicer-systemd:6.1.90-x86_64-latest"`)},
		{name: "local images", doc: groupDoc("image: oci:./layout:v1") + yamlText(`  image: "docker-archive:save.tar"`)},
		{name: "bad image", doc: groupDoc() + yamlText(`  image: "Not/An Image"`),
			want: []string{`slicer.yaml:5: config.image: image "Not/An Image" is neither min, debian, oci:DIR, oci-archive:FILE, docker-archive:FILE nor an OCI reference: could not parse reference: Not/An Image`}},
		{name: "bad group image", doc: groupDoc(`image: "oci:"`),
			want: []string{at(4, "image: oci: needs a path (oci:PATH[:REF])")}},
		{name: "kernel image", doc: groupDoc() + yamlText("  kernel_image: ghcr.io/x/kernel")},
		{name: "kernel image builtin", doc: groupDoc() + yamlText("  kernel_image: min"),
			want: []string{`slicer.yaml:5: config.kernel_image: "min" is a built-in root image; kernel_image names an OCI image holding a kernel (the default kernel is min's)`}},
		{name: "kernel file missing", doc: groupDoc() + yamlText("  kernel_file: vmlinux"), opts: inDir,
			want: []string{"slicer.yaml:5: config.kernel_file: stat " + filepath.Join(dir, "vmlinux") + ": no such file or directory"}},
		{name: "kernel file present", doc: groupDoc() + yamlText("  kernel_file: init.sh"), opts: inDir},

		{name: "boot watchdog and kernel args are valid", doc: groupDoc(`kernel_args: "console=ttyS1 rdinit=/nonexistent panic=0"`) + yamlText("  boot_watchdog: 10s")},
		{name: "boot watchdog not a duration", doc: groupDoc() + yamlText("  boot_watchdog: 10"),
			want: []string{`slicer.yaml:5: config.boot_watchdog: "10" is not a duration (want e.g. 20s or 2m)`}},
		{name: "boot watchdog too short", doc: groupDoc() + yamlText("  boot_watchdog: 500ms"),
			want: []string{"slicer.yaml:5: config.boot_watchdog: 500ms is out of range (want 1s to 1h0m0s)"}},
		{name: "kernel args set what the daemon sets", doc: groupDoc(`kernel_args: "quiet slicer.hostname=x ip=10.0.0.2"`),
			want: []string{
				at(4, `kernel_args: "slicer.hostname=x" is set by the daemon (slicer....) and cannot be given here`),
				at(4, `kernel_args: "ip=10.0.0.2" is set by the daemon (ip=...) and cannot be given here`),
			}},
		{name: "snapshot", doc: groupDoc("snapshot: true")},
		{name: "hot_fork", doc: groupDoc("hot_fork: true")},
		{name: "snapshot with a network", doc: groupDoc("snapshot: true", "network:", "  mode: isolated", "  range: 169.254.100.0/22")},
		{name: "init systemd and agent are valid", doc: groupDoc(`init: systemd`)},
		{name: "init agent is valid", doc: groupDoc(`init: agent`)},
		{name: "init something else", doc: groupDoc(`init: openrc`),
			want: []string{at(4, `init: must be systemd or agent, got "openrc"`)}},
		{name: "kernel args on two lines", doc: groupDoc(`kernel_args: "quiet\ndebug"`),
			want: []string{at(4, `kernel_args: "quiet\ndebug" holds a character that is not printable ASCII (one line of space-separated arguments)`)}},
		{name: "kernel args too long", doc: groupDoc("kernel_args: " + strings.Repeat("a", 1025)),
			want: []string{at(4, "kernel_args: is 1025 bytes, longer than the 1024 allowed")}},

		{name: "every problem at once", doc: yamlText("config:", "  host_groups:",
			"  - name: Bad", "    vcpu: -1", "    storage_size: 25Q",
			"  - name: ok", "    count: -1",
			"  hypervisor: nope", "  api:", "    port: -5"),
			want: []string{
				`slicer.yaml:3: config.host_groups[0].name: "Bad" is not a valid name: use lowercase letters, digits and '-', starting and ending with a letter or digit`,
				"slicer.yaml:4: config.host_groups[0].vcpu: must be at least 1, got -1",
				`slicer.yaml:5: config.host_groups[0].storage_size: "25Q" is not a size (want e.g. 25G, 512M)`,
				"slicer.yaml:7: config.host_groups[1].count: must be 0 or more, got -1",
				`slicer.yaml:8: config.hypervisor: "nope" is not a hypervisor (want one of qemu, firecracker, cloud-hypervisor)`,
				"slicer.yaml:10: config.api.port: -5 is not a TCP port (want 1 to 65535)",
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := validateText(t, tt.doc, tt.opts)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Validate() errors mismatch (-want +got):\n%s\nconfig:\n%s", diff, tt.doc)
			}
		})
	}
}

func TestValidateHypervisorRequired(t *testing.T) {
	cfg, err := Parse("slicer.yaml", []byte(yamlText("config:", "  host_groups:", "  - name: vm")))
	if err != nil {
		t.Fatal(err)
	}
	ApplyDefaults(cfg, "")
	want := []string{"slicer.yaml:1: config.hypervisor: required (one of qemu, firecracker, cloud-hypervisor)"}
	if diff := cmp.Diff(want, messages(Validate(cfg, ValidateOptions{}))); diff != "" {
		t.Errorf("Validate() errors mismatch (-want +got):\n%s", diff)
	}
}

func TestValidateWithoutSource(t *testing.T) {
	cfg := Default("qemu")
	cfg.HostGroups[0].VCPU = 0
	err := Validate(cfg, ValidateOptions{})
	want := []string{"config.host_groups[0].vcpu: must be at least 1, got 0"}
	if diff := cmp.Diff(want, messages(err)); diff != "" {
		t.Errorf("Validate() errors mismatch (-want +got):\n%s", diff)
	}
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "config.host_groups[0].vcpu" || fe.Line != 0 {
		t.Errorf("errors.As(FieldError) = %+v", fe)
	}
}

func TestParseRule(t *testing.T) {
	tests := []struct {
		in      string
		want    Rule
		wantErr bool
	}{
		{"192.168.1.0/24", Rule{Prefix: netip.MustParsePrefix("192.168.1.0/24")}, false},
		{"192.168.1.7/24", Rule{Prefix: netip.MustParsePrefix("192.168.1.0/24")}, false},
		{"1.1.1.1", Rule{Prefix: netip.MustParsePrefix("1.1.1.1/32")}, false},
		{"192.168.222.1:3128", Rule{Prefix: netip.MustParsePrefix("192.168.222.1/32"), Port: 3128}, false},
		{"10.0.0.0/8:443", Rule{Prefix: netip.MustParsePrefix("10.0.0.0/8"), Port: 443}, false},
		{"fd00::/8", Rule{Prefix: netip.MustParsePrefix("fd00::/8")}, false},
		{"[fd00::1]:53", Rule{Prefix: netip.MustParsePrefix("fd00::1/128"), Port: 53}, false},
		{"1.1.1.1:0", Rule{}, true},
		{"10.0.0.0/8:99999", Rule{}, true},
		{"10.0.0.0/33", Rule{}, true},
		{"example.com", Rule{}, true},
		{"", Rule{}, true},
	}
	for _, tt := range tests {
		got, err := ParseRule(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseRule(%q) = %+v, %v; want %+v, error %t", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}
