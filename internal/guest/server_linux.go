package guest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/yamux"
	"golang.org/x/sys/unix"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/agent"
	"github.com/openslicer/openslicer/internal/guest/sysconf"
)

// processStart is when this agent process started, for agent_uptime.
var processStart = time.Now()

// Server is the guest end of the protocol: the agent's HTTP routes, served
// on the yamux streams of a host channel.
type Server struct {
	log     *slog.Logger
	starter starter
	etcDir  string // where passwd and group are read
	paths   guestPaths
	fb      firstBootState
	bg      bgRegistry // background execs
	secrets sync.Mutex // serializes writes of the secrets directory
	host    hostLink   // the current session, for requests to the host
	// setClock sets the wall clock; nil (not init) refuses PUT /v1/clock.
	setClock func(time.Time) error
	// setIdentity applies an identity; nil (not init) refuses PUT
	// /v1/identity.
	setIdentity func(sysconf.Identity) error
	// doPower powers the guest off or reboots it (agent.PowerOff,
	// agent.Reboot); nil (not init) refuses POST /v1/power.
	doPower func(action string) error
}

// NewServer returns the agent's server for a process that is not PID 1;
// PID 1 makes its own with NewInitServer.
func NewServer(log *slog.Logger) *Server {
	return &Server{log: log, starter: plainStarter{}, etcDir: "/etc", paths: defaultPaths()}
}

// Init is what the agent as PID 1 (internal/guest/pid1) lends its server:
// the reaper every process is started through, and the setters of what
// only init may change. A server without them (NewServer) starts its
// processes itself and refuses those routes.
type Init struct {
	Reaper *Reaper
	// SetClock sets the wall clock, for PUT /v1/clock.
	SetClock func(time.Time) error
	// SetIdentity applies a checked identity, for PUT /v1/identity
	// (sysconf.ApplyIdentity).
	SetIdentity func(sysconf.Identity) error
	// Power powers the guest off or reboots it (agent.PowerOff,
	// agent.Reboot), for POST /v1/power. It is called after the answer
	// has gone to the host, and may return before the machine ends.
	Power func(action string) error
}

// NewInitServer returns the server of the agent as PID 1.
func NewInitServer(log *slog.Logger, in Init) *Server {
	s := NewServer(log)
	if in.Reaper != nil {
		s.starter = in.Reaper
	}
	s.setClock, s.setIdentity, s.doPower = in.SetClock, in.SetIdentity, in.Power
	return s
}

// Handler returns the agent's routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+agent.PathHealth, s.health)
	mux.HandleFunc("POST "+agent.PathExec, s.exec)
	mux.HandleFunc("PUT "+agent.PathFirstBoot, s.firstBoot)
	mux.HandleFunc("GET "+agent.PathStats, s.stats)
	mux.HandleFunc("POST "+agent.PathRelease, s.release)
	s.routeCopy(mux)
	s.routeFS(mux)
	s.routeBackground(mux)
	s.routeShell(mux)
	s.routeSecrets(mux)
	s.routeChannel(mux)
	s.routeClock(mux)
	s.routeSystem(mux)
	return mux
}

// ServeConn runs one yamux server session over conn, answering each stream
// the host opens, until the host goes away or ctx ends. It closes conn. A
// host disconnect (EOF) returns nil. Requests still running when the
// session ends see their context cancelled, which kills their processes;
// ServeConn returns once they have finished.
func (s *Server) ServeConn(ctx context.Context, conn io.ReadWriteCloser) error {
	sess, err := yamux.Server(conn, agent.YamuxConfig(s.log, true))
	if err != nil {
		conn.Close()
		return fmt.Errorf("start yamux session: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { sess.Close() })
	defer stop()
	s.host.set(sess)
	defer s.host.clear(sess)
	released := make(chan struct{})
	release := sync.OnceFunc(func() {
		close(released)
		sess.Close()
	})
	hs := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ConnContext: func(ctx context.Context, _ net.Conn) context.Context {
			return context.WithValue(ctx, releaseKey{}, release)
		},
	}
	err = hs.Serve(sess)
	sess.Close()
	// Running handlers see their streams fail and end; one that does not
	// within sessionDrain is abandoned, so that the channel is opened
	// again for the next host whatever a handler waits for.
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sessionDrain)
	if serr := hs.Shutdown(dctx); serr != nil {
		s.log.Warn("agent handlers still running after the host went away; serving the next host without them", "err", serr)
		hs.Close()
	}
	cancel()
	select {
	case <-released:
		return errReleased
	default:
	}
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case errors.Is(err, io.EOF), errors.Is(err, yamux.ErrSessionShutdown), errors.Is(err, net.ErrClosed),
		errors.Is(err, unix.ECONNRESET), errors.Is(err, unix.EPIPE):
		// The host went away, cleanly or with frames still unread.
		return nil
	}
	return fmt.Errorf("serve agent session: %w", err)
}

// sessionDrain bounds the wait for a session's handlers once it ended.
const sessionDrain = 5 * time.Second

// errReleased is what ServeConn returns when the host released the
// session (POST /v1/release).
var errReleased = errors.New("the host released the session")

// releaseKey keys, in a request's context, the function that ends the
// request's session (see release).
type releaseKey struct{}

// release answers 204 and flushes the answer to the host, then ends the
// session and closes the channel: the host is about to save the machine,
// and wants the agent waiting for its next host rather than inside this
// session (agent.Client.Release). ServeDevice then keeps the channel
// closed for agent.ReleaseQuiet.
func (s *Server) release(w http.ResponseWriter, r *http.Request) {
	end, ok := r.Context().Value(releaseKey{}).(func())
	if !ok {
		agent.WriteError(w, fmt.Errorf("release: %w (not served on a host channel)", api.ErrNotImplemented))
		return
	}
	w.WriteHeader(http.StatusNoContent)
	if err := http.NewResponseController(w).Flush(); err != nil {
		return // the host is gone already
	}
	end()
}

func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	host, err := os.Hostname()
	if err != nil {
		s.log.Warn("read hostname", "err", err)
	}
	ran, code := s.userdataStatus()
	agent.WriteJSON(w, http.StatusOK, api.AgentHealthResponse{
		Hostname:         host,
		AgentUptime:      time.Since(processStart),
		AgentVersion:     Version,
		SystemUptime:     systemUptime(),
		UserdataRan:      ran,
		UserdataExitCode: code,
		IP:               s.primaryIP(),
	})
}

// systemUptime is the time since the guest booted, suspended time included.
func systemUptime() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}
