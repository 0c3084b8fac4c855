package config

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/openslicer/openslicer/internal/imageref"
)

// Hypervisors are the backends a config may name.
var Hypervisors = []string{"qemu", "firecracker", "cloud-hypervisor"}

// Smallest sizes accepted for a VM.
const (
	minStorageBytes = 64 << 20
	minRAMBytes     = 64 << 20
)

// ValidateOptions carries what validation needs from the host.
type ValidateOptions struct {
	// BaseDir resolves relative userdata_file and kernel_file paths; empty
	// means the working directory.
	BaseDir string
	// CanRun reports why this host cannot run a hypervisor (nil when it
	// can). A nil CanRun skips the check.
	CanRun func(hypervisor string) error
}

// Validate checks cfg, which should have had ApplyDefaults applied, and
// reports every problem at once as joined FieldErrors citing file and line
// where the config came from a file.
func Validate(cfg *Config, opts ValidateOptions) error {
	p := &problems{src: cfg.Source}
	checkConfig(p, cfg, opts)
	checkImage(p, cfg)
	return p.err()
}

// checkConfig is every check but the image values, which Render leaves to
// the flags it was given.
func checkConfig(p *problems, cfg *Config, opts ValidateOptions) {
	if len(cfg.HostGroups) == 0 {
		p.add("config.host_groups", "at least one host group is required")
	}
	firstByName := map[string]int{}
	for i, g := range cfg.HostGroups {
		path := fmt.Sprintf("config.host_groups[%d]", i)
		if first, ok := firstByName[g.Name]; ok && g.Name != "" {
			p.add(path+".name", "%q is already the name of host_groups[%d]", g.Name, first)
		} else {
			firstByName[g.Name] = i
		}
		checkGroup(p, path, g, opts)
	}
	checkNetworksApart(p, cfg.HostGroups)
	checkHypervisor(p, cfg.Hypervisor, opts.CanRun)
	checkAPI(p, cfg.API)
	if cfg.KernelFile != "" {
		checkFile(p, "config.kernel_file", Resolve(opts.BaseDir, cfg.KernelFile))
	}
	checkBootWatchdog(p, cfg.BootWatchdog)
	checkMemoryBudget(p, cfg.MemoryBudget)
}

// maxBootWatchdog is the longest boot_watchdog accepted: beyond it the
// create's own wait timeout (5 minutes by default) is the bound anyway.
const maxBootWatchdog = time.Hour

func checkBootWatchdog(p *problems, s string) {
	if s == "" {
		return
	}
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		p.add("config.boot_watchdog", "%q is not a duration (want e.g. 20s or 2m)", s)
	case d < time.Second || d > maxBootWatchdog:
		p.add("config.boot_watchdog", "%s is out of range (want 1s to %s)", d, maxBootWatchdog)
	}
}

// maxKernelArgs bounds kernel_args: the x86 kernel command line holds
// 2048 bytes, and the daemon's own arguments need about 400.
const maxKernelArgs = 1024

// reservedKernelArgs are the arguments the daemon sets and the guest
// agent reads; kernel_args may not override them.
var reservedKernelArgs = []string{"slicer.", "ip="}

func checkKernelArgs(p *problems, path, s string) {
	if s == "" {
		return
	}
	if len(s) > maxKernelArgs {
		p.add(path, "is %d bytes, longer than the %d allowed", len(s), maxKernelArgs)
		return
	}
	for _, r := range s {
		if r < 0x20 || r > 0x7e {
			p.add(path, "%q holds a character that is not printable ASCII (one line of space-separated arguments)", s)
			return
		}
	}
	for _, arg := range strings.Fields(s) {
		for _, res := range reservedKernelArgs {
			if strings.HasPrefix(arg, res) {
				p.add(path, "%q is set by the daemon (%s...) and cannot be given here", arg, res)
			}
		}
	}
}

// Resolve is path relative to baseDir, unless path is absolute or baseDir
// is empty.
func Resolve(baseDir, path string) string {
	if baseDir == "" || filepath.IsAbs(path) {
		return path
	}
	return filepath.Join(baseDir, path)
}

// labelRE is a DNS label: lowercase letters, digits and inner hyphens.
var labelRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)

func checkGroup(p *problems, path string, g HostGroup, opts ValidateOptions) {
	checkName(p, path+".name", g)
	checkRAM(p, path, g)
	if g.VCPU < 1 {
		p.add(path+".vcpu", "must be at least 1, got %d", g.VCPU)
	}
	if g.Count != nil && *g.Count < 0 {
		p.add(path+".count", "must be 0 or more, got %d", *g.Count)
	}
	checkStorage(p, path, g)
	if g.Userdata != "" && g.UserdataFile != "" {
		p.add(path+".userdata_file", "set userdata or userdata_file, not both")
	}
	if g.UserdataFile != "" {
		checkFile(p, path+".userdata_file", Resolve(opts.BaseDir, g.UserdataFile))
	}
	for i, s := range g.DNSServers {
		if _, err := netip.ParseAddr(s); err != nil {
			p.add(fmt.Sprintf("%s.dns_servers[%d]", path, i), "%q is not an IP address", s)
		}
	}
	if g.GPUCount < 0 {
		p.add(path+".gpu_count", "must be 0 or more, got %d", g.GPUCount)
	} else if g.GPUCount > 0 {
		p.add(path+".gpu_count", "GPU passthrough is not supported yet")
	}
	if g.Network != nil {
		checkNetwork(p, path+".network", g)
	}
	checkKernelArgs(p, path+".kernel_args", g.KernelArgs)
	checkWarm(p, path, g)
	if g.Init != "" && g.Init != InitSystemd && g.Init != InitAgent {
		p.add(path+".init", "must be %s or %s, got %q", InitSystemd, InitAgent, g.Init)
	}
}

// hostnameDigits is how many digits of N a "<name>-N" hostname must leave
// room for: four (VM 9999), or more when count asks for more VMs.
func hostnameDigits(g HostGroup) int {
	return max(4, len(strconv.Itoa(g.VMCount())))
}

func checkName(p *problems, path string, g HostGroup) {
	switch {
	case g.Name == "":
		p.add(path, "a host group name is required")
	case !labelRE.MatchString(g.Name):
		p.add(path, "%q is not a valid name: use lowercase letters, digits and '-', starting and ending with a letter or digit", g.Name)
	case len(g.Name)+1+hostnameDigits(g) > 63:
		p.add(path, "%q is too long: VM hostnames %s-N must fit in 63 characters with room for %d digits of N",
			g.Name, g.Name, hostnameDigits(g))
	}
}

func checkRAM(p *problems, path string, g HostGroup) {
	var set []string
	for _, f := range []struct {
		key string
		v   int64
	}{{"ram_gb", g.RamGB}, {"ram_mb", g.RamMB}, {"ram_bytes", g.RamBytes}} {
		if f.v < 0 {
			p.add(path+"."+f.key, "must be positive, got %d", f.v)
			return
		}
		if f.v != 0 {
			set = append(set, f.key)
		}
	}
	switch {
	case len(set) == 0:
		p.add(path, "one of ram_gb, ram_mb or ram_bytes is required")
	case len(set) > 1:
		p.add(path+"."+set[1], "set only one of ram_gb, ram_mb and ram_bytes (found %s)", strings.Join(set, " and "))
	case g.RAMBytes() < minRAMBytes:
		p.add(path+"."+set[0], "%d bytes of RAM is below the minimum of %s", g.RAMBytes(), FormatSize(minRAMBytes))
	case g.RamBytes%(1<<20) != 0:
		p.add(path+".ram_bytes", "must be a whole number of MiB (multiple of 1048576), got %d", g.RamBytes)
	}
}

// checkStorage checks the storage type and size. devmapper and zfs are
// accepted here, with Slicer's size rules, so the config stays portable;
// this daemon answers a create in such a group with 501 (vm package), as
// it drives neither a thin pool nor ZFS yet.
func checkStorage(p *problems, path string, g HostGroup) {
	switch g.Storage {
	case "image":
		if g.StorageSize == "" {
			p.add(path+".storage_size", "required for storage: image (e.g. 25G)")
			return
		}
	case "devmapper":
		if g.StorageSize != "" {
			p.add(path+".storage_size", "not allowed for storage: devmapper (the thin pool's base size applies)")
		}
		return
	case "zfs":
		if g.StorageSize == "" {
			return
		}
	default:
		p.add(path+".storage", "%q is not a storage type (want image, devmapper or zfs)", g.Storage)
		return
	}
	n, err := g.StorageBytes()
	if err != nil {
		p.add(path+".storage_size", "%v", err)
	} else if n < minStorageBytes {
		p.add(path+".storage_size", "%q is below the minimum of %s", g.StorageSize, FormatSize(minStorageBytes))
	}
}

// checkImage checks that every image value parses (see package imageref).
// kernel_image must name an OCI image, not a built-in.
func checkImage(p *problems, cfg *Config) {
	check := func(field, v string) (imageref.Source, bool) {
		s, err := imageref.Parse(v, cfg.InsecureRegistry)
		if err != nil {
			p.add(field, "%v", err)
			return s, false
		}
		return s, true
	}
	if cfg.Image != "" {
		check("config.image", cfg.Image)
	}
	for i, g := range cfg.HostGroups {
		if g.Image != "" {
			check(fmt.Sprintf("config.host_groups[%d].image", i), g.Image)
		}
	}
	if cfg.KernelImage != "" {
		if s, ok := check("config.kernel_image", cfg.KernelImage); ok && s.Kind == imageref.Builtin {
			p.add("config.kernel_image", "%q is a built-in root image; kernel_image names an OCI image holding a kernel (the default kernel is min's)", cfg.KernelImage)
		}
	}
}

func checkHypervisor(p *problems, h string, canRun func(string) error) {
	switch {
	case h == "":
		p.add("config.hypervisor", "required (one of %s)", strings.Join(Hypervisors, ", "))
	case !slices.Contains(Hypervisors, h):
		p.add("config.hypervisor", "%q is not a hypervisor (want one of %s)", h, strings.Join(Hypervisors, ", "))
	case canRun != nil:
		if err := canRun(h); err != nil {
			p.add("config.hypervisor", "%s cannot run here: %v", h, err)
		}
	}
}

func checkAPI(p *problems, a API) {
	if a.Port < 1 || a.Port > 65535 {
		p.add("config.api.port", "%d is not a TCP port (want 1 to 65535)", a.Port)
	}
	if a.IsUnixSocket() {
		return
	}
	if _, err := netip.ParseAddr(a.BindAddress); err != nil {
		p.add("config.api.bind_address", "%q is neither an IP address nor a socket path (want e.g. 127.0.0.1 or ./slicer.sock)", a.BindAddress)
	}
}

// checkFile reports a path that is not an existing regular file.
func checkFile(p *problems, field, path string) {
	fi, err := os.Stat(path)
	switch {
	case err != nil:
		p.add(field, "%v", err)
	case !fi.Mode().IsRegular():
		p.add(field, "%s is not a regular file", path)
	}
}
