// Package api holds the wire types of the OpenSlicer REST API, the NDJSON exec
// frame, and the closed set of error classes with their HTTP status mapping.
//
// The JSON field names follow Slicer's published REST API and Go SDK byte for
// byte, so that programs written against that SDK work against this daemon.
// This package imports only the standard library.
package api

import (
	"encoding/json"
	"time"
)

// Node status values as shown by list endpoints: the three Slicer's SDKs
// document, and the only ones this daemon sends in "status". A VM being
// created or started again is "Running" (guest operations answer 503 until
// its agent is up, as for any VM still booting); a suspended VM is "Paused"
// (its memory and processes are kept, and resume brings it back). Node.State
// carries the finer state.
const (
	StatusRunning = "Running"
	StatusPaused  = "Paused"
	StatusStopped = "Stopped"
)

// Node state values, in the OpenSlicer extension field "state".
const (
	StateCreating  = "creating"
	StateRunning   = "running"
	StatePaused    = "paused"
	StateSuspended = "suspended"
	StateStopped   = "stopped"
)

// Info is the body of GET /info. The first four fields are Slicer's; the
// accelerator fields are this daemon's extension (omitted when empty, so
// the Slicer fields stay byte-compatible).
type Info struct {
	Version   string `json:"version,omitempty"`
	GitCommit string `json:"git_commit,omitempty"`
	Platform  string `json:"platform,omitempty"`
	Arch      string `json:"arch,omitempty"`
	// Accelerator is how guests run: "kvm" or "tcg" (extension).
	Accelerator string `json:"accelerator,omitempty"`
	// AcceleratorReason says why, in one sentence (extension).
	AcceleratorReason string `json:"accelerator_reason,omitempty"`
	// Pools are the host groups' warm pools (extension): groups with
	// `warm: N` in the config.
	Pools []PoolInfo `json:"pools,omitempty"`
}

// PoolInfo is one host group's warm pool in GET /info (extension): how
// many VMs are ready to be taken, how many are booting, and how many the
// config asks for.
type PoolInfo struct {
	HostGroup string `json:"host_group"`
	Ready     int    `json:"ready"`
	Filling   int    `json:"filling"`
	Target    int    `json:"target"`
}

// HostGroup is one element of GET /hostgroup.
type HostGroup struct {
	Name     string `json:"name,omitempty"`
	Count    int    `json:"count,omitempty"`
	RamBytes int64  `json:"ram_bytes,omitempty"`
	CPUs     int    `json:"cpus,omitempty"`
	Arch     string `json:"arch,omitempty"`
	GPUCount int    `json:"gpu_count"`
}

// Node is one element of GET /nodes and GET /hostgroup/{g}/nodes.
type Node struct {
	Hostname      string    `json:"hostname"`
	HostGroup     string    `json:"hostgroup,omitempty"`
	IP            string    `json:"ip"`
	RamBytes      int64     `json:"ram_bytes,omitempty"`
	CPUs          int       `json:"cpus,omitempty"`
	CreatedAt     time.Time `json:"created_at"`
	LastAgentCall time.Time `json:"last_agent_call,omitzero"`
	Arch          string    `json:"arch,omitempty"`
	Tags          []string  `json:"tags,omitempty"`
	Status        string    `json:"status,omitempty"`
	Persistent    bool      `json:"persistent,omitempty"`
	// State is an OpenSlicer extension: creating, running, paused,
	// suspended or stopped. Status is what Slicer's clients understand.
	State string `json:"state,omitempty"`
}

// CreateNodeRequest is the body of POST /hostgroup/{g}/nodes.
type CreateNodeRequest struct {
	RamBytes   int64                    `json:"ram_bytes,omitempty"`
	CPUs       int                      `json:"cpus,omitempty"`
	GPUCount   int                      `json:"gpu_count,omitempty"`
	Persistent bool                     `json:"persistent,omitempty"`
	DiskImage  string                   `json:"disk_image,omitempty"`
	ImportUser string                   `json:"import_user,omitempty"`
	GitHubUser string                   `json:"github_user,omitempty"`
	SSHKeys    []string                 `json:"ssh_keys,omitempty"`
	Userdata   string                   `json:"userdata,omitempty"`
	IP         string                   `json:"ip,omitempty"`
	Tags       []string                 `json:"tags,omitempty"`
	Secrets    []string                 `json:"secrets,omitempty"`
	Network    *CreateNodeNetworkPolicy `json:"network,omitempty"`
	// Hostname is listed by the combined openapi schema; names are allocated
	// by the daemon, so a non-empty value is rejected.
	Hostname string `json:"hostname,omitempty"`
}

// CreateNodeNetworkPolicy overrides an isolated group's egress lists for one
// VM. A nil list inherits the group's list; a non-nil empty list clears it.
type CreateNodeNetworkPolicy struct {
	Allow []string `json:"allow"`
	Drop  []string `json:"drop"`
}

// MarshalJSON omits nil lists and keeps empty ones as [].
func (p CreateNodeNetworkPolicy) MarshalJSON() ([]byte, error) {
	m := map[string][]string{}
	if p.Allow != nil {
		m["allow"] = p.Allow
	}
	if p.Drop != nil {
		m["drop"] = p.Drop
	}
	return json.Marshal(m)
}

// CreateNodeResponse is the body of a successful create or relaunch.
type CreateNodeResponse struct {
	Hostname   string    `json:"hostname"`
	HostGroup  string    `json:"hostgroup,omitempty"`
	IP         string    `json:"ip"`
	CreatedAt  time.Time `json:"created_at"`
	Arch       string    `json:"arch,omitempty"`
	Persistent bool      `json:"persistent"`
}

// DeleteResponse is the body of DELETE /hostgroup/{g}/nodes/{h}.
// DiskRemoved is a string, "true" or "false", as in Slicer's API.
type DeleteResponse struct {
	Message     string `json:"message"`
	DiskRemoved string `json:"disk_removed"`
	Error       string `json:"error"`
}

// VMDescription is the body of GET /vm/{h}.
type VMDescription struct {
	Node
	Storage              string                  `json:"storage,omitempty"`
	Image                string                  `json:"image,omitempty"`
	CommitID             string                  `json:"commit_id,omitempty"`
	ParentCommitID       string                  `json:"parent_commit_id,omitempty"`
	Network              VMNetworkDescription    `json:"network"`
	OpenAgentConnections int64                   `json:"open_agent_connections"`
	BgExecs              []ExecBackgroundSummary `json:"bg_execs,omitzero"`
}

// VMNetworkDescription describes the effective egress policy of a VM.
type VMNetworkDescription struct {
	Mode      string                   `json:"mode,omitempty"`
	Source    string                   `json:"policy_source,omitempty"`
	HostGroup VMNetworkPolicy          `json:"host_group"`
	Override  *CreateNodeNetworkPolicy `json:"override,omitempty"`
	Effective VMNetworkPolicy          `json:"effective"`
}

// VMNetworkPolicy is a pair of egress lists.
type VMNetworkPolicy struct {
	Allow []string `json:"allow"`
	Drop  []string `json:"drop"`
}

// ExecBackgroundSummary is one background exec in a VMDescription.
type ExecBackgroundSummary struct {
	ExecID    string     `json:"exec_id"`
	Command   string     `json:"command,omitempty"`
	PID       int        `json:"pid,omitempty"`
	State     string     `json:"state,omitempty"`
	StartedAt *time.Time `json:"started_at,omitempty"`
	ExitCode  *int       `json:"exit_code,omitempty"`
}

// VMTags is the body of GET and PATCH /vm/{h}/tags.
type VMTags struct {
	Hostname string   `json:"hostname"`
	Tags     []string `json:"tags"`
}

// Limits on a VM's tags. They are several times what cloud providers allow
// per resource (AWS: 50 tags, values of 256 characters; GCP: 64 labels of
// 63), so no real use should meet them, and together they bound one VM's
// tags at 256 KiB: its store record, a tag update, and its share of every
// list. A create or tag update past them is ErrInvalid (400), naming the
// limit.
const (
	// MaxTagsPerVM is how many tags one VM may carry.
	MaxTagsPerVM = 256
	// MaxTagBytes is the longest tag, in bytes of UTF-8.
	MaxTagBytes = 1024
)

// VMTagUpdate is the body of PATCH /vm/{h}/tags.
type VMTagUpdate struct {
	Add     []string  `json:"add,omitempty"`
	Remove  []string  `json:"remove,omitempty"`
	Replace *[]string `json:"replace,omitempty"`
	Name    *string   `json:"name,omitempty"`
}

// ShutdownRequest is the optional JSON body of POST /vm/{h}/shutdown; the
// action may also come as a query parameter.
type ShutdownRequest struct {
	Action string `json:"action,omitempty"`
}

// LogsResponse is the body of GET /vm/{h}/logs.
type LogsResponse struct {
	Hostname string `json:"hostname"`
	Lines    int    `json:"lines"`
	Content  string `json:"content"`
}

// AgentHealthResponse is the body of GET /vm/{h}/health. Durations are
// encoded as integer nanoseconds, as Go's time.Duration does.
type AgentHealthResponse struct {
	Hostname         string        `json:"hostname,omitempty"`
	AgentUptime      time.Duration `json:"agent_uptime,omitempty"`
	AgentVersion     string        `json:"agent_version,omitempty"`
	SystemUptime     time.Duration `json:"system_uptime,omitempty"`
	UserdataRan      bool          `json:"userdata_ran,omitempty"`
	UserdataExitCode *int          `json:"userdata_exit_code,omitempty"`
	IP               string        `json:"ip,omitempty"`
}

// NodeStat is one element of GET /nodes/stats and GET /node/{h}/stats.
type NodeStat struct {
	Hostname  string    `json:"hostname"`
	IP        string    `json:"ip"`
	CreatedAt time.Time `json:"created_at"`
	Snapshot  *Snapshot `json:"snapshot"`
	Error     string    `json:"error"`
}

// Snapshot is a guest's resource usage at one instant.
type Snapshot struct {
	Hostname             string    `json:"hostname"`
	Arch                 string    `json:"arch"`
	Timestamp            time.Time `json:"timestamp"`
	Uptime               string    `json:"uptime"`
	TotalCPUS            int       `json:"totalCpus"`
	TotalMemory          uint64    `json:"totalMemory"`
	MemoryUsed           uint64    `json:"memoryUsed"`
	MemoryAvailable      uint64    `json:"memoryAvailable"`
	MemoryUsedPercent    float64   `json:"memoryUsedPercent"`
	LoadAvg1             float64   `json:"loadAvg1"`
	LoadAvg5             float64   `json:"loadAvg5"`
	LoadAvg15            float64   `json:"loadAvg15"`
	DiskReadTotal        float64   `json:"diskReadTotal"`
	DiskWriteTotal       float64   `json:"diskWriteTotal"`
	NetworkReadTotal     float64   `json:"networkReadTotal"`
	NetworkWriteTotal    float64   `json:"networkWriteTotal"`
	DiskIOInflight       int64     `json:"diskIOInflight"`
	OpenConnections      int64     `json:"openConnections"`
	OpenFiles            int64     `json:"openFiles"`
	Entropy              int64     `json:"entropy"`
	DiskSpaceTotal       uint64    `json:"diskSpaceTotal"`
	DiskSpaceUsed        uint64    `json:"diskSpaceUsed"`
	DiskSpaceFree        uint64    `json:"diskSpaceFree"`
	DiskSpaceUsedPercent float64   `json:"diskSpaceUsedPercent"`
}

// Secret is the metadata of a stored secret (never its value).
type Secret struct {
	Name        string     `json:"name"`
	Size        int64      `json:"size"`
	Permissions string     `json:"permissions"`
	UID         uint32     `json:"uid,omitempty"`
	GID         uint32     `json:"gid,omitempty"`
	ModifiedAt  *time.Time `json:"modified_at,omitempty"`
}

// CreateSecretRequest is the body of POST /secrets; Data is base64.
type CreateSecretRequest struct {
	Name        string `json:"name"`
	Data        string `json:"data"`
	Permissions string `json:"permissions,omitempty"`
	UID         uint32 `json:"uid,omitempty"`
	GID         uint32 `json:"gid,omitempty"`
}

// UpdateSecretRequest is the body of PATCH /secrets/{name}.
type UpdateSecretRequest struct {
	Data        *string `json:"data,omitempty"`
	Permissions *string `json:"permissions,omitempty"`
	UID         *uint32 `json:"uid,omitempty"`
	GID         *uint32 `json:"gid,omitempty"`
}
