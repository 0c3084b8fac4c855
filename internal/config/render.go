package config

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"unicode/utf8"
)

// Defaults `slicer new` writes beyond the daemon defaults.
const (
	// NewImage is the image `slicer new` names unless given --image or --min.
	NewImage = "ghcr.io/openfaasltd/slicer-systemd:6.1.90-x86_64-latest"
	// NewCIDR is the bridge network `slicer new` uses unless given --cidr.
	NewCIDR = "192.168.137.0/24"
)

// NewOptions holds the flags of `slicer new NAME`. The zero value of every
// field means that flag's default.
type NewOptions struct {
	Name       string // NAME: the host group
	Hypervisor string // written as hypervisor:; required

	Count       *int   // --count (default 1; 0 = API-only)
	VCPU        int    // --cpu / --vcpu (default 2)
	RAMGB       int    // --ram / --ram_gb, GiB (default 4)
	Storage     string // --storage (default image)
	StorageSize string // --storage-size (default 25G)
	Persistent  bool   // --persistent

	Net       string   // --net bridge|isolated (default bridge)
	CIDR      string   // --cidr, bridge network (default 192.168.137.0/24); the gateway is its first host
	Drop      []string // --drop, isolated mode (repeatable)
	Allow     []string // --allow, isolated mode (repeatable; default 0.0.0.0/0)
	TapPrefix string   // --tap-prefix (bridge default <name>tap, cut to fit)
	DNS       []string // --dns (repeatable)

	APIBind          string // --api-bind: an IP or a socket path (default 127.0.0.1)
	APIPort          int    // --api-port (default 8080)
	APIAuth          *bool  // --api-auth (default on for TCP, off for a socket)
	GracefulShutdown *bool  // --graceful-shutdown (default true)

	Image        string   // --image
	Min          bool     // --min: the built-in image "min"
	UserdataFile string   // --userdata-file: read now, written inline as userdata: |
	GitHubUser   string   // --github
	SSHKeys      []string // --ssh-key (repeatable)
}

// Render returns the starter config `slicer new` prints for o. It reads
// o.UserdataFile; otherwise it is pure. The result parses, and validates
// too when the image is "min" and the hypervisor can run.
func Render(o NewOptions) (string, error) {
	var userdata string
	if o.UserdataFile != "" {
		b, err := os.ReadFile(o.UserdataFile)
		if err != nil {
			return "", fmt.Errorf("read --userdata-file: %w", err)
		}
		if !utf8.Valid(b) {
			return "", fmt.Errorf("read --userdata-file %s: not UTF-8 text", o.UserdataFile)
		}
		userdata = string(b)
	}
	cfg, flagErr := newConfig(o, userdata)
	p := &problems{}
	checkConfig(p, cfg, ValidateOptions{})
	if err := errors.Join(flagErr, p.err()); err != nil {
		return "", err
	}
	out := Format(cfg)
	if _, err := Parse("slicer new", []byte(out)); err != nil {
		return "", fmt.Errorf("render config (a bug): %w", err)
	}
	return out, nil
}

// newConfig turns flags into the config they describe, and reports what
// only the flags can get wrong; Render validates the config for the rest.
func newConfig(o NewOptions, userdata string) (*Config, error) {
	var errs []error
	g := HostGroup{
		Name:        o.Name,
		Count:       o.Count,
		VCPU:        o.VCPU,
		RamGB:       int64(o.RAMGB),
		Storage:     o.Storage,
		StorageSize: o.StorageSize,
		Persistent:  o.Persistent,
		Userdata:    userdata,
		DNSServers:  o.DNS,
	}
	applyGroupDefaults(&g)
	switch o.Net {
	case "", "bridge":
		if o.Drop != nil || o.Allow != nil {
			errs = append(errs, errors.New("--drop and --allow apply to --net=isolated"))
		}
		gw, err := gatewayOf(o.CIDR)
		errs = append(errs, err)
		g.Network = &Network{Bridge: defaultBridge(o.Name), TapPrefix: o.TapPrefix, Gateway: gw}
		if o.TapPrefix == "" {
			g.Network.TapPrefix = defaultTapPrefix(o.Name)
		}
	case "isolated":
		if o.CIDR != "" {
			errs = append(errs, errors.New("--cidr applies to --net=bridge"))
		}
		g.Network = &Network{Mode: "isolated", TapPrefix: o.TapPrefix, Drop: o.Drop, Allow: o.Allow}
		if g.Network.Drop == nil {
			g.Network.Drop = []string{}
		}
		if g.Network.Allow == nil {
			g.Network.Allow = []string{"0.0.0.0/0"}
		}
	default:
		g.Network = &Network{Mode: o.Net} // validation names the problem
	}

	cfg := &Config{
		HostGroups: []HostGroup{g},
		GitHubUser: o.GitHubUser,
		SSHKeys:    o.SSHKeys,
		Image:      NewImage,
		Hypervisor: o.Hypervisor,
		API:        API{Port: o.APIPort, BindAddress: o.APIBind, Auth: Auth{Enabled: o.APIAuth}},
	}
	switch {
	case o.Min && o.Image != "" && o.Image != DefaultImage:
		errs = append(errs, fmt.Errorf("--min and --image %q conflict; give one", o.Image))
	case o.Min:
		cfg.Image = DefaultImage
	case o.Image != "":
		cfg.Image = o.Image
	}
	if o.GracefulShutdown != nil && !*o.GracefulShutdown {
		cfg.GracefulShutdown = new(false)
	}
	if cfg.API.Port == 0 {
		cfg.API.Port = DefaultPort
	}
	if cfg.API.BindAddress == "" {
		cfg.API.BindAddress = DefaultBindAddress
	}
	if cfg.API.Auth.Enabled == nil && !cfg.API.IsUnixSocket() {
		cfg.API.Auth.Enabled = new(true)
	}
	return cfg, errors.Join(errs...)
}

// gatewayOf is the bridge gateway for --cidr: the network's first host
// address with its prefix length, e.g. 192.168.137.0/24 → 192.168.137.1/24.
func gatewayOf(cidr string) (string, error) {
	if cidr == "" {
		cidr = NewCIDR
	}
	p, err := netip.ParsePrefix(cidr)
	if err != nil || !p.Addr().Is4() || p.Bits() > 30 {
		return "", fmt.Errorf("--cidr %q is not an IPv4 CIDR with room for VMs (want e.g. %s)", cidr, NewCIDR)
	}
	return netip.PrefixFrom(p.Masked().Addr().Next(), p.Bits()).String(), nil
}
