package api

import (
	"fmt"
	"net/url"
	"strconv"
	"time"
)

// Exec frame types, in the order a stream carries them: one started, any
// number of stdout/stderr, one exit. Background-exec logs add gap.
const (
	FrameStarted = "started"
	FrameStdout  = "stdout"
	FrameStderr  = "stderr"
	FrameExit    = "exit"
	FrameGap     = "gap"
)

// Stdio encodings of exec output.
const (
	StdioText   = "text"
	StdioBase64 = "base64"
)

// ExecFrame is one NDJSON line of a streaming exec response. ExitCode is
// always present; a non-zero exit code is only ever on the last frame.
type ExecFrame struct {
	Timestamp     time.Time `json:"timestamp,omitzero"`
	Type          string    `json:"type,omitempty"`
	Pid           int       `json:"pid,omitempty"`
	Encoding      string    `json:"encoding,omitempty"`
	Data          string    `json:"data,omitempty"`
	StartedAt     time.Time `json:"started_at,omitzero"`
	EndedAt       time.Time `json:"ended_at,omitzero"`
	Signal        string    `json:"signal,omitempty"`
	Stdout        string    `json:"stdout,omitempty"`
	Stderr        string    `json:"stderr,omitempty"`
	ExitCode      int       `json:"exit_code"`
	Error         string    `json:"error,omitempty"`
	ID            uint64    `json:"id,omitempty"`
	DroppedBytes  int64     `json:"dropped_bytes,omitempty"`
	DroppedFrames int       `json:"dropped_frames,omitempty"`
	Message       string    `json:"message,omitempty"`
}

// Final reports whether f ends a stream: an exit frame, or an error frame
// (a command that could not start).
func (f *ExecFrame) Final() bool {
	return f.Type == FrameExit || f.Error != ""
}

// ExecResult is the body of a buffered exec (buffered=true). A non-zero exit
// code is still HTTP 200.
type ExecResult struct {
	Stdout    string    `json:"stdout,omitempty"`
	Stderr    string    `json:"stderr,omitempty"`
	Encoding  string    `json:"encoding,omitempty"`
	Pid       int       `json:"pid,omitempty"`
	StartedAt time.Time `json:"started_at,omitzero"`
	EndedAt   time.Time `json:"ended_at,omitzero"`
	Signal    string    `json:"signal,omitempty"`
	ExitCode  int       `json:"exit_code"`
	Error     string    `json:"error,omitempty"`
}

// ExecRequest is an exec call. On the wire it travels entirely in the query
// string (see Query and ParseExecQuery); the request body is raw stdin.
type ExecRequest struct {
	Command string
	Args    []string
	Env     []string
	// UID and GID are nil when omitted: the guest's default non-root user.
	// A value of 0 means root.
	UID         *uint32
	GID         *uint32
	Cwd         string
	Shell       string
	Permissions string
	Stdin       bool
	Stdio       string // StdioText (the default) or StdioBase64
	Buffered    bool
	Background  bool
	RingBytes   int64
}

// Query encodes r as the exec query string.
func (r *ExecRequest) Query() url.Values {
	q := url.Values{}
	q.Set("cmd", r.Command)
	for _, a := range r.Args {
		q.Add("args", a)
	}
	for _, e := range r.Env {
		q.Add("env", e)
	}
	if r.UID != nil {
		q.Set("uid", strconv.FormatUint(uint64(*r.UID), 10))
	}
	if r.GID != nil {
		q.Set("gid", strconv.FormatUint(uint64(*r.GID), 10))
	}
	setIf(q, "cwd", r.Cwd)
	setIf(q, "shell", r.Shell)
	setIf(q, "permissions", r.Permissions)
	setIf(q, "stdio", r.Stdio)
	if r.Stdin {
		q.Set("stdin", "true")
	}
	if r.Buffered {
		q.Set("buffered", "true")
	}
	if r.Background {
		q.Set("background", "true")
	}
	if r.RingBytes > 0 {
		q.Set("ring_bytes", strconv.FormatInt(r.RingBytes, 10))
	}
	return q
}

// ParseExecQuery decodes and validates an exec query string. Errors wrap
// ErrInvalid and name the offending parameter.
func ParseExecQuery(q url.Values) (*ExecRequest, error) {
	r := &ExecRequest{
		Command:     q.Get("cmd"),
		Args:        q["args"],
		Env:         q["env"],
		Cwd:         q.Get("cwd"),
		Shell:       q.Get("shell"),
		Permissions: q.Get("permissions"),
		Stdio:       q.Get("stdio"),
	}
	var err error
	if r.UID, err = optUint32(q, "uid"); err != nil {
		return nil, err
	}
	if r.GID, err = optUint32(q, "gid"); err != nil {
		return nil, err
	}
	for _, b := range []struct {
		name string
		dst  *bool
	}{{"stdin", &r.Stdin}, {"buffered", &r.Buffered}, {"background", &r.Background}} {
		if *b.dst, err = optBool(q, b.name); err != nil {
			return nil, err
		}
	}
	if v := q.Get("ring_bytes"); v != "" {
		if r.RingBytes, err = strconv.ParseInt(v, 10, 64); err != nil || r.RingBytes < 0 {
			return nil, fmt.Errorf("%w: ring_bytes %q is not a non-negative integer", ErrInvalid, v)
		}
	}
	switch r.Stdio {
	case "":
		r.Stdio = StdioText
	case StdioText, StdioBase64:
	default:
		return nil, fmt.Errorf("%w: stdio %q: want text or base64", ErrInvalid, r.Stdio)
	}
	if r.Command == "" {
		return nil, fmt.Errorf("%w: cmd is required", ErrInvalid)
	}
	if r.Buffered && r.Stdin {
		return nil, fmt.Errorf("%w: stdin cannot be used with buffered=true", ErrInvalid)
	}
	return r, nil
}

func setIf(q url.Values, k, v string) {
	if v != "" {
		q.Set(k, v)
	}
}

func optUint32(q url.Values, name string) (*uint32, error) {
	v := q.Get(name)
	if v == "" {
		return nil, nil
	}
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("%w: %s %q is not a 32-bit unsigned integer", ErrInvalid, name, v)
	}
	u := uint32(n)
	return &u, nil
}

func optBool(q url.Values, name string) (bool, error) {
	v := q.Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%w: %s %q is not a boolean", ErrInvalid, name, v)
	}
	return b, nil
}
