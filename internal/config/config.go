// Package config owns the daemon's YAML configuration: its types, strict
// loading (unknown keys are errors, reported with file, line and field),
// defaults applied in one place, validation that reports every problem at
// once, and rendering the starter config printed by `slicer new`.
//
// It has no side effects: it parses and checks, nothing more.
package config

import (
	"fmt"
	"strings"
	"time"
)

// File is the whole YAML document: everything lives under `config:`.
type File struct {
	Config Config `yaml:"config"`
}

// Config is the daemon configuration.
type Config struct {
	HostGroups       []HostGroup `yaml:"host_groups"`
	Image            string      `yaml:"image,omitempty"`
	KernelImage      string      `yaml:"kernel_image,omitempty"`
	KernelFile       string      `yaml:"kernel_file,omitempty"`
	Hypervisor       string      `yaml:"hypervisor,omitempty"`
	GracefulShutdown *bool       `yaml:"graceful_shutdown,omitempty"`
	GitHubUser       string      `yaml:"github_user,omitempty"`
	SSHKeys          []string    `yaml:"ssh_keys,omitempty"`
	InsecureRegistry bool        `yaml:"insecure_registry,omitempty"`
	API              API         `yaml:"api"`
	// BootWatchdog (extension) bounds how long a booting guest may print
	// nothing on its console, as a Go duration ("20s"); empty means the
	// default for the accelerator (see BootWatchdogBound).
	BootWatchdog string `yaml:"boot_watchdog,omitempty"`
	// MemoryBudget (extension) is a size ("16G"): the guest memory the
	// daemon's VMs (nodes and warm pool VMs together) may hold before the
	// warm pools stop filling. Creates are never refused by it. Empty
	// means 80% of the host's memory (see pool.go in internal/vm).
	MemoryBudget string `yaml:"memory_budget,omitempty"`

	// Source records where the configuration was read from, so validation
	// can cite file and line. Nil for a config built in code.
	Source *Source `yaml:"-"`
}

// API is the REST listener.
type API struct {
	Port        int    `yaml:"port,omitempty"`
	BindAddress string `yaml:"bind_address,omitempty"`
	Auth        Auth   `yaml:"auth,omitempty"`
}

// Auth controls bearer-token authentication. Enabled is nil when the file
// does not say: on for TCP, off for a unix socket.
type Auth struct {
	Enabled *bool  `yaml:"enabled,omitempty"`
	Token   string `yaml:"token,omitempty"`
}

// HostGroup is a named pool of VMs sharing one hardware profile.
type HostGroup struct {
	Name         string   `yaml:"name"`
	Count        *int     `yaml:"count,omitempty"`
	VCPU         int      `yaml:"vcpu,omitempty"`
	RamGB        int64    `yaml:"ram_gb,omitempty"`
	RamMB        int64    `yaml:"ram_mb,omitempty"`
	RamBytes     int64    `yaml:"ram_bytes,omitempty"`
	Storage      string   `yaml:"storage,omitempty"`
	StorageSize  string   `yaml:"storage_size,omitempty"`
	Persistent   bool     `yaml:"persistent,omitempty"`
	Userdata     string   `yaml:"userdata,omitempty"`
	UserdataFile string   `yaml:"userdata_file,omitempty"`
	DNSServers   []string `yaml:"dns_servers,omitempty"`
	GPUCount     int      `yaml:"gpu_count,omitempty"`
	Network      *Network `yaml:"network,omitempty"`
	// KernelArgs (extension) are appended to the guest kernel command
	// line after the daemon's own arguments.
	KernelArgs string `yaml:"kernel_args,omitempty"`
	// Image overrides the top-level image for this group (an OpenSlicer
	// extension: Slicer has one image per daemon).
	Image string `yaml:"image,omitempty"`
	// Snapshot (extension) makes the group's creates restore from a
	// snapshot template instead of booting: the first boots once to
	// agent ready and is captured (see vm/template.go).
	Snapshot bool `yaml:"snapshot,omitempty"`
	// HotFork (extension) keeps the RAM of the group's VMs in shared
	// memory (hypervisor.Spec.SharedMemory): a memory commit then copies
	// it while the vCPUs are stopped, and its forks map the copy instead
	// of loading a migration stream, so they start sooner. The cost: the
	// guest's RAM is shared memory (no transparent huge pages, not merged
	// by KSM).
	HotFork bool `yaml:"hot_fork,omitempty"`
	// Warm (extension) is how many VMs the daemon keeps booted and ready
	// for this group, outside its nodes: a create takes one (pool.go).
	Warm int `yaml:"warm,omitempty"`
	// Init (extension) chooses the guest's PID 1 after boot: "systemd"
	// hands it to the image's systemd, "agent" keeps the agent; empty
	// (the default) hands it to systemd when the image's /sbin/init is
	// systemd. The guest gets it as slicer.init= on its command line.
	Init string `yaml:"init,omitempty"`
}

// Init values a host group may set.
const (
	InitSystemd = "systemd"
	InitAgent   = "agent"
)

// Network is a host group's network. Mode is "bridge" or "isolated".
type Network struct {
	Mode      string   `yaml:"mode,omitempty"`
	Bridge    string   `yaml:"bridge,omitempty"`
	TapPrefix string   `yaml:"tap_prefix,omitempty"`
	Gateway   string   `yaml:"gateway,omitempty"`
	Addresses []string `yaml:"addresses,omitempty"`
	Range     string   `yaml:"range,omitempty"`
	Allow     []string `yaml:"allow,omitempty"`
	Drop      []string `yaml:"drop,omitempty"`
}

// Source is the file a Config was parsed from and the line of every field
// path in it (e.g. "config.host_groups[0].storage_size").
type Source struct {
	File  string
	Lines map[string]int
}

// Line is the line of path, or of its nearest ancestor present in the file
// (a missing field is reported where its parent is); 0 when unknown.
func (s *Source) Line(path string) int {
	if s == nil {
		return 0
	}
	for path != "" {
		if l, ok := s.Lines[path]; ok {
			return l
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return 0
}

// BootWatchdogBound is boot_watchdog as a duration; zero when unset.
// Validate has checked it parses.
func (c Config) BootWatchdogBound() time.Duration {
	d, _ := time.ParseDuration(c.BootWatchdog)
	return d
}

// Graceful reports whether VMs get a guest shutdown before being stopped
// when the daemon exits (default true).
func (c Config) Graceful() bool {
	return c.GracefulShutdown == nil || *c.GracefulShutdown
}

// IsUnixSocket reports whether BindAddress names a unix socket rather than
// an IP address: a path starting with "/", "./" or "../", or ending in ".sock".
func (a API) IsUnixSocket() bool {
	return IsSocketPath(a.BindAddress)
}

// IsSocketPath reports whether a bind address names a unix socket.
func IsSocketPath(s string) bool {
	return strings.HasPrefix(s, "/") || strings.HasPrefix(s, "./") ||
		strings.HasPrefix(s, "../") || strings.HasSuffix(s, ".sock")
}

// AuthEnabled reports whether bearer-token auth is on: as configured, or by
// default on for TCP and off for a unix socket.
func (a API) AuthEnabled() bool {
	if a.Auth.Enabled != nil {
		return *a.Auth.Enabled
	}
	return !a.IsUnixSocket()
}

// RAMBytes is the group's memory from whichever of ram_bytes, ram_mb or
// ram_gb is set; 0 when none is.
func (g HostGroup) RAMBytes() int64 {
	switch {
	case g.RamBytes != 0:
		return g.RamBytes
	case g.RamMB != 0:
		return g.RamMB << 20
	default:
		return g.RamGB << 30
	}
}

// StorageBytes is storage_size in bytes.
func (g HostGroup) StorageBytes() (int64, error) {
	return ParseSize(g.StorageSize)
}

// ImageFor is the image a group's VMs boot: the group's own, else the
// top-level one.
func (c Config) ImageFor(g HostGroup) string {
	if g.Image != "" {
		return g.Image
	}
	return c.Image
}

// VMCount is the number of VMs created at start-up: count, or 1 when unset.
func (g HostGroup) VMCount() int {
	if g.Count == nil {
		return 1
	}
	return *g.Count
}

// Hostname is the name of the group's n-th VM: "<name>-<n>". It is the one
// place the rule is written: the store allocates n (store.Allocate takes
// this function), and network plans name VMs with it.
func (g HostGroup) Hostname(n int) string {
	return fmt.Sprintf("%s-%d", g.Name, n)
}
