package config

// Defaults, in one place. Image "min" is the daemon's built-in image.
const (
	DefaultImage       = "min"
	DefaultVCPU        = 2
	DefaultRAMGB       = 4
	DefaultStorage     = "image"
	DefaultStorageSize = "25G"
	DefaultPort        = 8080
	DefaultBindAddress = "127.0.0.1"
)

// ApplyDefaults fills every setting the file left out. hypervisor is the
// backend to use when the file names none; the caller picks it (it depends
// on the host). Explicit zeros of vcpu and ram_* count as "not set".
func ApplyDefaults(cfg *Config, hypervisor string) {
	if cfg == nil {
		return
	}
	for i := range cfg.HostGroups {
		applyGroupDefaults(&cfg.HostGroups[i])
	}
	if cfg.Image == "" {
		cfg.Image = DefaultImage
	}
	if cfg.Hypervisor == "" {
		cfg.Hypervisor = hypervisor
	}
	if cfg.GracefulShutdown == nil {
		cfg.GracefulShutdown = new(true)
	}
	api := &cfg.API
	if api.Port == 0 {
		api.Port = DefaultPort
	}
	if api.BindAddress == "" {
		api.BindAddress = DefaultBindAddress
	}
	if api.Auth.Enabled == nil {
		api.Auth.Enabled = new(!api.IsUnixSocket())
	}
}

func applyGroupDefaults(g *HostGroup) {
	if g.Count == nil {
		g.Count = new(1)
	}
	if g.VCPU == 0 {
		g.VCPU = DefaultVCPU
	}
	if g.RamGB == 0 && g.RamMB == 0 && g.RamBytes == 0 {
		g.RamGB = DefaultRAMGB
	}
	if g.Storage == "" {
		g.Storage = DefaultStorage
	}
	if g.Storage == "image" && g.StorageSize == "" {
		g.StorageSize = DefaultStorageSize
	}
	n := g.Network
	if n == nil {
		return
	}
	if n.Mode == "" {
		n.Mode = "bridge"
	}
	if n.Mode == "bridge" && n.Bridge == "" {
		n.Bridge = defaultBridge(g.Name)
	}
	if n.Mode == "bridge" && n.TapPrefix == "" {
		n.TapPrefix = defaultTapPrefix(g.Name)
	}
}

// defaultBridge is "br<name>0", the name cut so the result fits the
// kernel's 15-character interface names.
func defaultBridge(group string) string {
	return "br" + truncate(group, 12) + "0"
}

// defaultTapPrefix is "<name>tap", cut to 11 characters so that a TAP name
// (prefix plus VM number) fits in 15 characters up to VM 9999.
func defaultTapPrefix(group string) string {
	return truncate(group, 8) + "tap"
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// Default is the configuration `slicer up` runs when given no file: one
// API-only group "sandbox" on the built-in image, no network, the API on
// 127.0.0.1:8080 with auth on. It is complete: ApplyDefaults changes nothing.
func Default(hypervisor string) *Config {
	return &Config{
		HostGroups: []HostGroup{{
			Name:        "sandbox",
			Count:       new(0),
			VCPU:        2,
			RamGB:       2,
			Storage:     "image",
			StorageSize: "4G",
		}},
		Image:            DefaultImage,
		Hypervisor:       hypervisor,
		GracefulShutdown: new(false),
		API: API{
			Port:        DefaultPort,
			BindAddress: DefaultBindAddress,
			Auth:        Auth{Enabled: new(true)},
		},
	}
}

// DefaultYAML is Default rendered as YAML, for `slicer up` to show what it
// runs.
func DefaultYAML(hypervisor string) string {
	return Format(Default(hypervisor))
}
