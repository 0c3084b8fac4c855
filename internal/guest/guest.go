// Package guest is everything of the agent that runs inside the VM: the
// guest end of the protocol that internal/agent describes (its package
// comment lists the routes) and the programs around it.
//
//   - Server serves the agent's routes on the yamux streams of a host
//     channel (ServeDevice, ServeConn): health, exec (streamed, buffered
//     and background), first boot (SSH keys and userdata, once per disk),
//     stats, the clock, the guest's identity and power (system*.go: what
//     only init may change, through the setters Init lends), copies (cp-v1 and legacy tar and binary, staged
//     and moved into place), the file-system routes and the inotify watch,
//     shells on a PTY, port forwards, secrets, and the channel probes.
//     Copies, file-system requests and watches act as the user they are
//     for (identity*.go). It also serves programs in the guest on the
//     root-only control socket (ServeControl), and opens streams to the
//     host to pull the VM's secrets.
//   - Reaper collects every child of PID 1; as PID 1 the server starts its
//     processes through it (NewInitServer). PID 1 itself is the subpackage
//     pid1 (mounts, modules, the switch to the root disk, power-off or
//     reboot on the host's request or the signals busybox's tools send),
//     and the system settings it applies (hostname, loopback, network,
//     clock, identity) are sysconf, which routes use too.
//   - RunUpload ("slicer-agent upload …") finalises the SDK's chunked
//     copies, and SyncSecrets ("slicer-agent secrets sync") asks PID 1 to
//     pull the secrets, through the control socket.
//
// The daemon never links this package: it speaks to it only through
// agent.Client.
package guest

// Version is the agent's version, reported by health. Release builds set it
// with -ldflags "-X github.com/openslicer/openslicer/internal/guest.Version=…".
var Version = "dev"
