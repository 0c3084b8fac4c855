package agent

// The wire vocabulary both ends share: routes, upgrade protocols and the
// bodies that are ours rather than the public API's (those are in api).
// The routes are described in the package comment.

// Routes of the agent's HTTP API, served by the guest.
const (
	PathHealth    = "/v1/health"
	PathExec      = "/v1/exec"
	PathFirstBoot = "/v1/firstboot"
	PathStats     = "/v1/stats"
	PathClock     = "/v1/clock"
	PathPower     = "/v1/power"
	PathIdentity  = "/v1/identity"
	PathRelease   = "/v1/release"
	PathCopy      = "/v1/cp" // both ways: POST uploads, GET downloads
	PathSecrets   = "/v1/secrets"

	// File-system routes (spec §3.9-§3.10); the daemon passes the public
	// /vm/{h}/fs/... requests through to them unchanged.
	PathFSReadDir = "/v1/fs/readdir"
	PathFSStat    = "/v1/fs/stat"
	PathFSMkdir   = "/v1/fs/mkdir"
	PathFSRemove  = "/v1/fs/remove"
	PathFSWatch   = "/v1/fs/watch"

	PathChannelSink   = "/v1/channel/sink"
	PathChannelSource = "/v1/channel/source"
)

// PathHostSecrets is the route the guest asks the host on a stream it
// opens (GET), answered by HostSecretsHandler.
const PathHostSecrets = "/v1/host/secrets"

// Routes that switch protocols, and the Upgrade header naming what the
// stream carries after the 101.
const (
	PathShell   = "/v1/shell"
	PathForward = "/v1/forward"

	// ShellProtocol: shell frames both ways (api/shellframe).
	ShellProtocol = "slicer-shell"
	// ForwardProtocol: raw bytes both ways, to and from the upstream.
	ForwardProtocol = "slicer-forward"
)

// ContentTypeNDJSON is the type of exec frame streams.
const ContentTypeNDJSON = "application/x-ndjson"

// FirstBoot is the per-VM data the host hands the agent once it is ready,
// the body of PUT /v1/firstboot. The agent acts on it once per disk: while
// the marker file /etc/slicer/userdata-ran is absent it installs SSHKeys
// for the default user and runs Userdata as root in the background; once
// the marker exists (or while userdata runs) a call does nothing.
type FirstBoot struct {
	// Userdata is a script run once, as root. Without a "#!" line it is
	// run with /bin/sh. Empty (or only white space) means none: the marker
	// is written at once with exit code 0, so that health reports
	// userdata_ran=true and wait=userdata returns without delay.
	Userdata string `json:"userdata,omitempty"`
	// SSHKeys are public keys added to the default user's
	// ~/.ssh/authorized_keys; an entry may hold several lines.
	SSHKeys []string `json:"ssh_keys,omitempty"`
	// DefaultUser names the account keys are installed for and that
	// userdata sees as TARGET_USER. Empty means the image's uid-1000
	// account, or root when the image has none.
	DefaultUser string `json:"default_user,omitempty"`
}

// Secrets reach a guest two ways, both carrying the complete set the VM
// should have as a JSON []SecretFile:
//
//   - push: the host PUTs the set to PathSecrets whenever it changes and
//     whenever the agent comes up;
//   - pull: `slicer-agent secrets sync` in the guest asks PID 1 on its
//     control socket, which GETs PathHostSecrets on a stream it opens to
//     the host, answered by HostSecretsHandler.
//
// Either way the agent makes its secrets directory (/run/slicer/secrets, a
// tmpfs) hold exactly that set. A SecretFile is one secret as a guest gets
// it: the file /run/slicer/secrets/<Name> holding Data, with mode
// Permissions and owner UID:GID.
type SecretFile struct {
	Name string `json:"name"`
	Data []byte `json:"data"` // base64 in JSON
	// Permissions is the file mode in octal, e.g. "0600"; at most 0777.
	Permissions string `json:"permissions"`
	UID         uint32 `json:"uid"`
	GID         uint32 `json:"gid"`
}
