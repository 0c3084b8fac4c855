// Package agent is the guest protocol of OpenSlicer and the host's end of
// it: the routes and bodies both ends share (protocol.go), and the Client
// the daemon reaches every VM's agent with. The agent that runs inside the
// VM is internal/guest, which the daemon never links; the name of the
// channel is internal/agent/channel, which the hypervisor backends share.
//
// The protocol, bottom to top:
//
//  1. One byte stream per VM. On QEMU it is a virtio-serial port named
//     "slicer.agent" (channel.PortName): the host connects to the unix
//     socket behind QEMU's chardev, the guest opens /dev/vportNpM. Opening
//     the port fails with ENXIO until the host has connected, and a host
//     disconnect reads as EOF; the guest retries and reopens, so a disconnect only means
//     "wait for the next host".
//  2. hashicorp/yamux multiplexes that stream. The host is the yamux client
//     and opens the streams of the routes below; the guest is the yamux
//     server and accepts them. The guest opens a stream only to ask the
//     host something (GET /v1/host/secrets).
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
//	POST /v1/exec?background=true  (spec §3.7) starts the command in a
//	                    session of its own, stdin /dev/null, output into a
//	                    log ring of ring_bytes (default 1 MiB; all rings of
//	                    execs not deleted share 256 MiB, beyond that 503).
//	                    201 api.ExecBackgroundResponse ("ex_" + hex id);
//	                    400 with stdin or buffered, or a command or cwd
//	                    that cannot be run. It outlives its caller.
//	GET  /v1/exec       200 []api.ExecBackgroundInfo, oldest first: running
//	                    execs and exited ones not deleted.
//	GET  /v1/exec/{id}  200 api.ExecBackgroundInfo; 404 unknown; 410 deleted
//	                    (true of every {id} route).
//	DELETE /v1/exec/{id} 200 api.ExecDeleteResponse and the exec and its log
//	                    are forgotten; 409 while it runs.
//	POST /v1/exec/{id}/kill optional body api.ExecKillRequest: signal TERM
//	                    (default), KILL, INT, HUP, QUIT, USR1, USR2 (with or
//	                    without SIG, any case; else 400) to the process
//	                    group; TERM is followed by KILL after grace_ms
//	                    (default 5000) if the process is still there. 200
//	                    api.ExecKillResponse; once the process has exited
//	                    nothing is sent and signal_sent is empty.
//	GET  /v1/exec/{id}/wait-exit query timeout: whole seconds, default 30,
//	                    0 answers at once, over 600 counts as 600. 200
//	                    api.ExecWaitExitResponse once the exit frame is
//	                    logged, or timed_out with running at the timeout.
//	GET  /v1/exec/{id}/logs query follow, from_id. NDJSON api.ExecFrame with
//	                    ids from 1, output base64 in data; first a gap
//	                    frame (dropped_bytes, dropped_frames, message; id
//	                    of the last frame dropped) if frames from from_id
//	                    were evicted. follow=false ends after the ring's
//	                    frames; follow=true waits for more and ends after
//	                    the exit frame.
//	PUT  /v1/firstboot  body: FirstBoot as JSON. Installs the SSH keys and
//	                    starts userdata, unless first boot is done already
//	                    (the marker exists) or under way; 204 either way.
//	GET  /v1/stats      api.Snapshot as JSON, read from the guest's /proc.
//	PUT  /v1/clock      body Clock: sets the guest's wall clock to the
//	                    host's (after a restore or resume it stood still);
//	                    204, or 501 from an agent that is not init.
//	PUT  /v1/identity   body Identity: who the guest is, each field empty
//	                    left alone: entropy (MinEntropy to MaxEntropy
//	                    bytes, credited with RNDADDENTROPY, then the kernel
//	                    RNG reseeded, RNDRESEEDCRNG), hostname
//	                    (sethostname, /etc/hostname), network (the device's
//	                    other IPv4 addresses removed, the address set, the
//	                    link up, the default route replaced, over
//	                    rtnetlink; /etc/resolv.conf when DNS is given),
//	                    machine_id (/etc/machine-id, and D-Bus's copy when
//	                    it is a file). Applied in that order; 204; 400 and
//	                    nothing applied for a bad field; 501 from an agent
//	                    that is not init. The daemon sends it after a
//	                    restore (a booted guest reads its command line).
//	POST /v1/power      body Power: {"action": "poweroff"|"reboot"}. 202
//	                    is answered and flushed first; then the agent as
//	                    PID 1 ends every process, syncs, remounts / read-
//	                    only and calls reboot(2), and an agent beside
//	                    another init signals PID 1 (SIGRTMIN+4 poweroff,
//	                    SIGRTMIN+5 reboot, as systemd takes them). No
//	                    program of the guest is run. 400 another action;
//	                    501 from an agent that is neither.
//	POST /v1/release    204 is answered and flushed first; then the agent
//	                    ends this session, closes its end of the channel
//	                    and keeps it closed for ReleaseQuiet before it
//	                    opens it for the next host. The daemon sends it
//	                    just before the machine is saved (suspend,
//	                    capture), so that the saved guest waits for a new
//	                    host instead of serving a session that is gone.
//	GET  /v1/shell      query: uid, gid, shell, cwd (all optional); headers
//	                    Connection: Upgrade, Upgrade: slicer-shell. Starts
//	                    the shell (default: the user's login shell, else
//	                    /bin/sh) on a PTY as a session leader, then answers
//	                    101 and the stream carries shell frames (api/shellframe) both ways:
//	                    data and window sizes in, data out; a shutdown
//	                    frame or the host's EOF hangs the shell up; when it
//	                    exits the agent sends api.ShellSessionClose and
//	                    closes.
//	GET  /v1/forward    query: upstream (host:port or unix:/path); headers
//	                    Connection: Upgrade, Upgrade: slicer-forward. Dials
//	                    the upstream in the guest (503 when it cannot), then
//	                    answers 101 and splices raw bytes both ways; EOF on
//	                    either side half-closes the other.
//	POST /v1/cp         upload, the public /vm/{h}/cp wire protocol of spec
//	                    §3.8 as it is (query; body; Content-Type,
//	                    Content-Length, X-Slicer-Unpacked-Size): cp-v1 and
//	                    legacy modes, cp(1)-like destinations, writes
//	                    through temp files, a tar staged and moved into
//	                    place whole (guest's tar_stage_linux.go), 507
//	                    when the declared size does not fit (before the
//	                    body is read). Answer: 200 {"path","bytes"}.
//	GET  /v1/cp         download, likewise public: the file's bytes or the
//	                    directory's tar, X-Slicer-Source-Type,
//	                    X-Slicer-Source-Name-Base64 (cp-v1) and
//	                    X-Slicer-File-Mode (files). "slicer-agent upload"
//	                    (guest.RunUpload) finalises chunked uploads.
//	                    Copies, fs routes and watches act as the user they
//	                    are for (guest's identity.go): uid and gid in the query,
//	                    none for the image's default user, 0 for root; 403
//	                    for what that user may not do. A NUL byte in a
//	                    path or glob is 400 naming the parameter.
//	GET  /v1/fs/readdir query path (absolute, or relative to the user's
//	                    home, "~/x"), uid, gid; the same for every fs route.
//	                    200 []api.FSInfo sorted by name, types as lstat
//	                    sees them, mode as four octal digits with the
//	                    setuid/setgid/sticky bits ("0644", "1777"); 404
//	                    missing, 400 not a directory.
//	GET  /v1/fs/stat    query path. 200 api.FSInfo (lstat), or 404.
//	POST /v1/fs/mkdir   body api.FSMkdirRequest. 200 {"path"}: the
//	                    directory gets mode (default 0755), missing parents
//	                    (recursive) 0755, all owned by the user;
//	                    409 it exists (without recursive) or is a file, 404
//	                    a missing parent, 400 a bad mode or a file parent.
//	DELETE /v1/fs/remove query path, recursive. 200 {"path"}; 409 a
//	                    non-empty directory without recursive, 404 missing,
//	                    400 "/".
//	GET  /v1/fs/watch   the public watch query and Last-Event-ID header of
//	                    spec §3.10. text/event-stream of "watch" events
//	                    (api.FSWatchEvent), a comment every 15 s; 400 or
//	                    404 before the stream starts (see guest fsWatch).
//	PUT  /v1/secrets    body: the VM's complete set of secrets, JSON
//	                    []SecretFile (data base64). /run/slicer/secrets
//	                    (root, 0755) is made to hold exactly those files,
//	                    each written to a temporary file, chowned uid:gid,
//	                    chmodded, renamed into place; other entries are
//	                    removed. 204; 400 (nothing written) for a bad body,
//	                    a name that is not [A-Za-z0-9._-]{1,253} without a
//	                    leading '.', a repeated name or a mode over 0777.
//	POST /v1/channel/sink    reads the body to the end; 200 {"bytes": n}.
//	GET  /v1/channel/source  query bytes=N (at most 1 GiB): N zero bytes.
//	                    Channel probes: they touch nothing but the channel,
//	                    for the benchmark's raw-throughput baseline.
//
// The other way round, the guest opens a stream to the host for
//
//	GET  /v1/host/secrets  answered by the Client's ServeGuest handler
//	                    (HostSecretsHandler): 200 JSON []SecretFile, the
//	                    VM's set; 501 from a client that serves nothing.
//
// and PID 1 serves programs in the guest on the control socket
// /run/slicer/agent.sock (0600; other users than root get 403):
//
//	POST /v1/secrets/sync  pulls GET /v1/host/secrets and applies it as
//	                    PUT /v1/secrets does; 200 {"synced":[names]}, 503
//	                    when no host session is up.
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

// YamuxConfig returns the session settings both ends use. Timeouts are
// generous because a guest under TCG emulation is slow. StreamOpenTimeout
// is off: the host opens streams before the guest agent is up, and they
// wait in the channel until it is. keepAlive is set by the guest only: a
// paused VM cannot answer pings, and the host must not drop its session
// (and the exec streams on it) because of a pause.
func YamuxConfig(log *slog.Logger, keepAlive bool) *yamux.Config {
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

// WriteJSON writes v as a JSON response with status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// WriteError writes err as an api.ErrorResponse with the status of its
// class: how either end answers an error before the first byte of a body.
func WriteError(w http.ResponseWriter, err error) {
	WriteJSON(w, api.StatusOf(err), api.ErrorResponse{Error: err.Error()})
}
