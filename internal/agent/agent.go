// Package agent is the guest protocol of OpenSlicer, both ends of it: the
// agent that runs inside every VM (linux files: Server, RunInit) and the
// host-side Client the daemon uses to reach it.
//
// The protocol, bottom to top:
//
//  1. One byte stream per VM. On QEMU it is a virtio-serial port named
//     "slicer.agent" (PortName): the host connects to the unix socket behind
//     QEMU's chardev, the guest opens /dev/vportNpM. Opening the port fails
//     with ENXIO until the host has connected, and a host disconnect reads
//     as EOF; the guest retries and reopens, so a disconnect only means
//     "wait for the next host".
//  2. hashicorp/yamux multiplexes that stream. The host is the yamux client
//     and opens every stream; the guest is the yamux server and accepts
//     them.
//  3. Each stream carries one plain HTTP/1.1 request (no keep-alive). The
//     routes are ours, not a public contract.
//
// The routes:
//
//	GET  /v1/health     api.AgentHealthResponse as JSON, userdata_ran and
//	                    userdata_exit_code read from the marker
//	                    /etc/slicer/userdata-ran, ip the first global
//	                    IPv4 address.
//	POST /v1/exec       query: the public exec query (api.ExecRequest.Query).
//	                    Answer: NDJSON api.ExecFrame lines exactly as the
//	                    public API streams them (started, stdout/stderr,
//	                    exit; or one error frame), so the daemon passes
//	                    them through as they are. With stdin=true the
//	                    request body is the process's stdin, read while the
//	                    answer streams (full duplex). With buffered=true the
//	                    answer is one api.ExecResult.
//	PUT  /v1/firstboot  body: FirstBoot as JSON. Installs the SSH keys and
//	                    starts userdata, unless first boot is done already
//	                    (the marker exists) or under way; 204 either way.
//	GET  /v1/stats      api.Snapshot as JSON, read from the guest's /proc.
//
// Errors before the first frame are JSON api.ErrorResponse bodies with the
// status of their api error class; the Client turns them back into
// *api.Error values that unwrap to that class.
package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/openslicer/openslicer/api"
)

// Version is the agent's version, reported by health. Release builds set it
// with -ldflags "-X github.com/openslicer/openslicer/internal/agent.Version=…".
var Version = "dev"

// PortName is the name of the virtio-serial port the agent listens on.
const PortName = "slicer.agent"

// Routes of the agent's HTTP API.
const (
	pathHealth    = "/v1/health"
	pathExec      = "/v1/exec"
	pathFirstBoot = "/v1/firstboot"
	pathStats     = "/v1/stats"
)

const contentTypeNDJSON = "application/x-ndjson"

// yamuxConfig returns the session settings both ends use. Timeouts are
// generous because a guest under TCG emulation is slow. StreamOpenTimeout
// is off: the host opens streams before the guest agent is up, and they
// wait in the channel until it is. keepAlive is set by the guest only: a
// paused VM cannot answer pings, and the host must not drop its session
// (and the exec streams on it) because of a pause.
func yamuxConfig(log *slog.Logger, keepAlive bool) *yamux.Config {
	c := yamux.DefaultConfig()
	c.LogOutput = nil
	c.Logger = yamuxLogger{log}
	c.EnableKeepAlive = keepAlive
	c.KeepAliveInterval = 30 * time.Second
	c.ConnectionWriteTimeout = 30 * time.Second
	c.StreamOpenTimeout = 0
	return c
}

// yamuxLogger routes yamux's printf-style messages to slog. yamux marks its
// messages "[ERR]" or "[WARN]"; most of them describe a peer going away,
// which the protocol expects, so they are logged one level down.
type yamuxLogger struct{ log *slog.Logger }

func (l yamuxLogger) Print(v ...any)                 { l.emit(fmt.Sprint(v...)) }
func (l yamuxLogger) Println(v ...any)               { l.emit(fmt.Sprint(v...)) }
func (l yamuxLogger) Printf(format string, v ...any) { l.emit(fmt.Sprintf(format, v...)) }

func (l yamuxLogger) emit(msg string) {
	level := slog.LevelDebug
	switch {
	case strings.HasPrefix(msg, "[ERR] "):
		level, msg = slog.LevelWarn, strings.TrimPrefix(msg, "[ERR] ")
	case strings.HasPrefix(msg, "[WARN] "):
		level, msg = slog.LevelInfo, strings.TrimPrefix(msg, "[WARN] ")
	}
	l.log.Log(context.Background(), level, strings.TrimSpace(msg))
}

// writeJSON writes v as a JSON response with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError writes err as an api.ErrorResponse with the status of its class.
func writeError(w http.ResponseWriter, err error) {
	writeJSON(w, api.StatusOf(err), api.ErrorResponse{Error: err.Error()})
}
