package api

import (
	"fmt"
	"strings"
	"time"
)

// Commits and cold forks (spec §3.14): a commit is a read-only copy of a
// stopped persistent VM's disk; a fork is a new VM in the source's host
// group whose disk is copy-on-write over a commit.

// CommitModeDisk is the mode of a commit that holds a disk only (no
// memory, processes or sockets), the mode Slicer documents.
const CommitModeDisk = "disk"

// CommitModeMemory (an extension value of the mode field) is the mode of a
// commit of a running VM: its memory, devices and disk, captured with the
// VM paused only for the capture. Its forks start with the source's
// processes and files, under a new name and identity (a hot fork).
const CommitModeMemory = "memory"

// Status values of commit and fork answers.
const (
	CommitStatusCommitted = "committed"
	CommitStatusDeleted   = "deleted"
	ForkStatusForked      = "forked"
	// ChildStatusRunning: the fork waited for the child's agent
	// (wait=agent); ChildStatusStarting: it did not (wait=none).
	ChildStatusRunning  = "running"
	ChildStatusStarting = "starting"
)

// Tag modes of a fork: the child gets the source's tags and the request's
// (append, the default), or the request's alone (replace).
const (
	TagModeAppend  = "append"
	TagModeReplace = "replace"
)

// Fix-ups a fork applies to its child's disk before it is answered. A fork
// that names none applies all of them; an empty list applies none.
const (
	FixupHostname    = "hostname"
	FixupMachineID   = "machine-id"
	FixupSSHHostKeys = "ssh-host-keys"
)

// AllFixups are the fix-ups a fork applies when its request names none.
var AllFixups = []string{FixupHostname, FixupMachineID, FixupSSHHostKeys}

// CommitVMRequest is the optional JSON body of POST /vm/{h}/commit.
type CommitVMRequest struct {
	// Mode is CommitModeDisk (the default: a stopped VM's disk) or
	// CommitModeMemory (a running VM's memory, devices and disk).
	Mode     string            `json:"mode,omitempty"`
	Tags     []string          `json:"tags,omitempty"`
	Labels   map[string]string `json:"labels,omitempty"`
	CacheKey string            `json:"cache_key,omitempty"`
}

// IsZero reports whether r sets nothing, in which case a client sends no
// body at all, as Slicer's SDK does.
func (r CommitVMRequest) IsZero() bool {
	return r.Mode == "" && len(r.Tags) == 0 && len(r.Labels) == 0 && strings.TrimSpace(r.CacheKey) == ""
}

// CommitVMResponse is the body of a successful commit.
type CommitVMResponse struct {
	Hostname     string            `json:"hostname"`
	CommitID     string            `json:"commit_id"`
	Status       string            `json:"status"`
	ParentStatus string            `json:"parent_status,omitempty"`
	Mode         string            `json:"mode"`
	Tags         []string          `json:"tags,omitempty"`
	Labels       map[string]string `json:"labels,omitempty"`
	CacheKey     string            `json:"cache_key,omitempty"`
}

// CommitInfo is one element of GET /vm/commits.
type CommitInfo struct {
	CommitID        string            `json:"commit_id"`
	SourceHostname  string            `json:"source_hostname"`
	SourceHostGroup string            `json:"source_host_group"`
	CreatedAt       time.Time         `json:"created_at"`
	Mode            string            `json:"mode"`
	Tags            []string          `json:"tags,omitempty"`
	Labels          map[string]string `json:"labels,omitempty"`
	CacheKey        string            `json:"cache_key,omitempty"`
}

// CommitDeleteResponse is the body of DELETE /vm/commits/{id}.
type CommitDeleteResponse struct {
	CommitID string `json:"commit_id"`
	Status   string `json:"status"`
}

// ForkVMRequest is the optional JSON body of POST /vm/commits/{id}/fork.
// The child's name is always allocated by the daemon (<group>-N).
type ForkVMRequest struct {
	// Network overrides the child's egress lists (isolated groups only):
	// a nil list inherits the source's, an empty one clears it.
	Network *ForkVMNetworkPolicy `json:"network,omitempty"`
	Tags    []string             `json:"tags,omitempty"`
	// TagMode is TagModeAppend (the default) or TagModeReplace.
	TagMode string `json:"tag_mode,omitempty"`
	// Secrets replaces the source's grants; nil inherits them, an empty
	// list grants none.
	Secrets *[]string `json:"secrets,omitempty"`
	// Persistent keeps the child (and its disk) when it stops.
	Persistent bool `json:"persistent"`
	// Fixups are the fix-ups to apply (Fixup*); nil applies all of
	// them, an empty list none.
	Fixups *[]string `json:"fixups,omitempty"`
	// VCPU and RamBytes size the child (default: the source's); more than
	// the host group allows is ErrInvalid.
	VCPU     int   `json:"vcpu,omitempty"`
	RamBytes int64 `json:"ram_bytes,omitempty"`
}

// ForkVMNetworkPolicy overrides a fork's egress lists: a nil field
// inherits the source's list, an empty one clears it.
type ForkVMNetworkPolicy struct {
	Allow *[]string `json:"allow,omitempty"`
	Drop  *[]string `json:"drop,omitempty"`
}

// ForkVMResponse is the body of a successful fork.
type ForkVMResponse struct {
	Hostname       string `json:"hostname"`
	SourceHostname string `json:"source_hostname"`
	CommitID       string `json:"commit_id,omitempty"`
	Status         string `json:"status"`
	ParentStatus   string `json:"parent_status,omitempty"`
	ChildStatus    string `json:"child_status,omitempty"`
	Mode           string `json:"mode"`
	Persistent     bool   `json:"persistent"`
}

// MaxCommitIDBytes bounds a commit ID a client may send.
const MaxCommitIDBytes = 128

// CheckCommitID rejects what can never be a commit ID: empty, longer than
// MaxCommitIDBytes, or holding "..", "/", "\" or NUL (as Slicer's SDK
// rejects them), so an ID can never address another path, on the wire or
// on disk. The error wraps ErrInvalid.
func CheckCommitID(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("%w: commit id is empty", ErrInvalid)
	case len(id) > MaxCommitIDBytes:
		return fmt.Errorf("%w: commit id of %d bytes is longer than %d", ErrInvalid, len(id), MaxCommitIDBytes)
	case strings.Contains(id, ".."), strings.ContainsAny(id, "/\\\x00"):
		return fmt.Errorf("%w: commit id %q holds \"..\", \"/\", \"\\\" or NUL", ErrInvalid, id)
	}
	return nil
}
