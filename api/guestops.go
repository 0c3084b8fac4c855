package api

import "time"

// Background exec (spec §3.7).

// ExecBackgroundResponse is the 201 body of a background exec launch.
type ExecBackgroundResponse struct {
	ExecID    string    `json:"exec_id"`
	PID       int       `json:"pid"`
	StartedAt time.Time `json:"started_at"`
	RingBytes int64     `json:"ring_bytes"`
}

// ExecBackgroundInfo describes one background exec (GET /vm/{h}/exec and
// GET /vm/{h}/exec/{id}).
type ExecBackgroundInfo struct {
	ExecID       string     `json:"exec_id"`
	PID          int        `json:"pid"`
	Command      string     `json:"command"`
	Args         []string   `json:"args,omitempty"`
	Cwd          string     `json:"cwd,omitempty"`
	UID          uint32     `json:"uid,omitempty"`
	StartedAt    time.Time  `json:"started_at"`
	Running      bool       `json:"running"`
	ExitCode     *int       `json:"exit_code,omitempty"`
	Signal       string     `json:"signal,omitempty"`
	EndedAt      *time.Time `json:"ended_at,omitempty"`
	BytesWritten int64      `json:"bytes_written"`
	BytesDropped int64      `json:"bytes_dropped"`
	NextID       uint64     `json:"next_id"`
	RingBytes    int64      `json:"ring_bytes"`
}

// ExecKillRequest is the optional JSON body of POST /vm/{h}/exec/{id}/kill.
// Signal defaults to TERM, which escalates to KILL after GraceMs (default
// 5000).
type ExecKillRequest struct {
	Signal  string `json:"signal,omitempty"`
	GraceMs int    `json:"grace_ms,omitempty"`
}

// ExecKillResponse is the body of a kill.
type ExecKillResponse struct {
	ExecID     string `json:"exec_id"`
	PID        int    `json:"pid"`
	Running    bool   `json:"running"`
	SignalSent string `json:"signal_sent"`
}

// ExecWaitExitResponse is the body of GET /vm/{h}/exec/{id}/wait-exit.
type ExecWaitExitResponse struct {
	ExecID   string     `json:"exec_id"`
	Running  bool       `json:"running"`
	ExitCode *int       `json:"exit_code,omitempty"`
	Signal   string     `json:"signal,omitempty"`
	EndedAt  *time.Time `json:"ended_at,omitempty"`
	TimedOut bool       `json:"timed_out"`
}

// ExecDeleteResponse is the body of DELETE /vm/{h}/exec/{id}.
type ExecDeleteResponse struct {
	ExecID string `json:"exec_id"`
	Reaped bool   `json:"reaped"`
}

// Copy (spec §3.8, cp-v1).

// Copy modes, the mode query parameter of /vm/{h}/cp.
const (
	CopyModeBinary    = "cp-v1-binary"
	CopyModeTar       = "cp-v1-tar"
	CopyModeRecursive = "cp-v1-recursive" // download only
	CopyModeLegacyBin = "binary"
	CopyModeLegacyTar = "tar"
	CopySemanticsV1   = "cp-v1"
)

// Copy source types (source_type and X-Slicer-Source-Type).
const (
	CopySourceFile      = "file"
	CopySourceDirectory = "directory"
)

// Copy headers.
const (
	HeaderUnpackedSize     = "X-Slicer-Unpacked-Size"
	HeaderSourceType       = "X-Slicer-Source-Type"
	HeaderSourceNameBase64 = "X-Slicer-Source-Name-Base64"
	HeaderSourceName       = "X-Slicer-Source-Name"
	HeaderFileMode         = "X-Slicer-File-Mode"
)

// Filesystem (spec §3.9-§3.10).

// FSInfo is one entry of readdir, or the body of stat. Mtime is RFC3339 on
// the wire.
type FSInfo struct {
	Name  string    `json:"name"`
	Type  string    `json:"type"` // "file" | "directory" | "symlink"
	Size  int64     `json:"size"`
	Mtime time.Time `json:"mtime"`
	Mode  string    `json:"mode"`
}

// FSMkdirRequest is the body of POST /vm/{h}/fs/mkdir.
type FSMkdirRequest struct {
	Path      string `json:"path"`
	Recursive bool   `json:"recursive,omitempty"`
	Mode      string `json:"mode,omitempty"`
}

// FSWatchRequest is a watch; on the wire it travels in the query string,
// LastEventID as the Last-Event-ID header.
type FSWatchRequest struct {
	Paths       []string `json:"paths,omitempty"`
	Patterns    []string `json:"patterns,omitempty"`
	Events      []string `json:"events,omitempty"`
	UID         uint32   `json:"uid,omitempty"`
	Recursive   bool     `json:"recursive,omitempty"`
	OneShot     bool     `json:"one_shot,omitempty"`
	Debounce    string   `json:"debounce,omitempty"`
	Timeout     string   `json:"timeout,omitempty"`
	MaxEvents   int      `json:"max_events,omitempty"`
	LastEventID string   `json:"last_event_id,omitempty"`
}

// FSWatchEvent is the data of one "watch" server-sent event.
type FSWatchEvent struct {
	ID        uint64 `json:"id"`
	Type      string `json:"type"`
	Path      string `json:"path"`
	Timestamp string `json:"timestamp"`
	Size      int64  `json:"size"`
	IsDir     bool   `json:"isDir"`
	Message   string `json:"message,omitempty"`
}

// Shell WebSocket frame types (spec §3.11). A frame is one type byte, a
// 4-byte big-endian payload length, then the payload.
const (
	ShellData         byte = 0x01
	ShellWindowSize   byte = 0x02
	ShellShutdown     byte = 0x03
	ShellHeartbeat    byte = 0x04
	ShellSessionClose byte = 0x05
)

// Forward WebSocket upgrade headers (spec §3.12).
const (
	HeaderInletsClientID = "X-Inlets-Client-ID"
	HeaderInletsMode     = "X-Inlets-Mode"
	HeaderInletsUpstream = "X-Inlets-Upstream"
)
