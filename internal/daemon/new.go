package daemon

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/openslicer/openslicer/internal/config"
)

// newCommand is `slicer new NAME [flags]`: print a starter config.
func newCommand(out io.Writer) *cobra.Command {
	var o config.NewOptions
	var count int
	var apiAuth, graceful bool
	cmd := &cobra.Command{
		Use:   "new NAME",
		Short: "Print a starter config with one host group named NAME (slicer new NAME > slicer.yaml)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Name, o.Hypervisor = args[0], defaultHypervisor()
			f := cmd.Flags()
			if f.Changed("count") {
				o.Count = &count
			}
			if f.Changed("api-auth") {
				o.APIAuth = &apiAuth
			}
			if f.Changed("graceful-shutdown") {
				o.GracefulShutdown = &graceful
			}
			text, err := config.Render(o)
			if err != nil {
				return err
			}
			_, err = fmt.Fprint(out, text)
			return err
		},
	}
	f := cmd.Flags()
	f.IntVar(&count, "count", 1, "VMs created at start (0 = API-only)")
	f.IntVar(&o.VCPU, "cpu", 2, "vCPUs per VM (default and maximum for API launches)")
	f.IntVar(&o.VCPU, "vcpu", 2, "same as --cpu")
	f.IntVar(&o.RAMGB, "ram", 4, "GiB of RAM per VM (default and maximum for API launches)")
	f.IntVar(&o.RAMGB, "ram_gb", 4, "same as --ram")
	f.StringVar(&o.Storage, "storage", "image", "storage backend: image")
	f.StringVar(&o.StorageSize, "storage-size", "25G", "root disk size")
	f.BoolVar(&o.Persistent, "persistent", false, "keep disks of config-declared VMs")
	f.StringVar(&o.Net, "net", "bridge", "network mode: bridge or isolated")
	f.StringVar(&o.CIDR, "cidr", "", "bridge network (default "+config.NewCIDR+")")
	f.StringArrayVar(&o.Drop, "drop", nil, "isolated mode: drop egress to CIDR, IP or IP:port (repeatable)")
	f.StringArrayVar(&o.Allow, "allow", nil, "isolated mode: allow egress to CIDR, IP or IP:port (repeatable)")
	f.StringVar(&o.TapPrefix, "tap-prefix", "", "bridge mode: TAP device name prefix")
	f.StringArrayVar(&o.DNS, "dns", nil, "DNS server for guests (repeatable)")
	f.StringVar(&o.APIBind, "api-bind", "", "API bind address: an IP or a unix socket path (default 127.0.0.1)")
	f.IntVar(&o.APIPort, "api-port", 0, "API port (default 8080)")
	f.BoolVar(&apiAuth, "api-auth", true, "require a bearer token (default on for TCP, off for a socket)")
	f.BoolVar(&graceful, "graceful-shutdown", true, "power guests off gracefully when the daemon stops")
	f.StringVar(&o.Image, "image", "", "guest image (default "+config.NewImage+")")
	f.BoolVar(&o.Min, "min", false, "use the built-in min image")
	f.StringVar(&o.UserdataFile, "userdata-file", "", "first-boot script to inline as userdata")
	f.StringVar(&o.GitHubUser, "github", "", "GitHub user whose SSH keys to install")
	f.StringArrayVar(&o.SSHKeys, "ssh-key", nil, "SSH public key to install (repeatable)")
	return cmd
}
