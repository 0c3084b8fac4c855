// Package server is the daemon's HTTP API: one route table (routes.go),
// bearer-token auth, request decoding, the mapping of error classes to HTTP
// status (writeError, through api.StatusOf), and NDJSON streaming with a
// flush per frame. It calls only the vm.Manager.
package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/vm"
)

// Server serves the REST API over a vm.Manager.
type Server struct {
	vms   *vm.Manager
	log   *slog.Logger
	token string // empty: auth disabled
	info  api.Info
	// shutdown is called by POST /daemon/shutdown, detach set by
	// ?detach=true; it must not block.
	shutdown func(detach bool)
	metrics  *metrics
	secrets  SecretStore // nil: secrets endpoints answer 501
}

// Options configure a Server.
type Options struct {
	Manager *vm.Manager
	Log     *slog.Logger
	// Token enables bearer auth when non-empty.
	Token    string
	Info     api.Info
	Shutdown func(detach bool)
	// Secrets is the host-side secret store; nil disables /secrets.
	Secrets SecretStore
}

// New returns a Server.
func New(opt Options) *Server {
	shutdown := opt.Shutdown
	if shutdown == nil {
		shutdown = func(bool) {}
	}
	return &Server{vms: opt.Manager, log: opt.Log, token: opt.Token, info: opt.Info, shutdown: shutdown, metrics: newMetrics(opt.Manager, opt.Info.Accelerator), secrets: opt.Secrets}
}

// Handler returns the http.Handler of the API.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	s.routes(mux)
	return s.logRequests(splitQueryInPath(s.auth(mux)))
}

// splitQueryInPath repairs requests whose query string arrived
// percent-encoded inside the path, as Slicer's Go SDK sends for
// GetHostGroupNodes with a tag filter ("/hostgroup/g/nodes%3Ftag=...").
func splitQueryInPath(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if path, query, ok := strings.Cut(r.URL.Path, "?"); ok && r.URL.RawQuery == "" {
			r.URL.Path, r.URL.RawPath, r.URL.RawQuery = path, "", query
		}
		next.ServeHTTP(w, r)
	})
}

// logRequests logs every request at debug level, and failures at info.
func (s *Server) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r)
		if !rec.wrote {
			// A handler that returns without a word would be answered
			// 200 with an empty body by net/http: a failure passed off as
			// success. Never let that happen.
			s.writeError(rec, r, fmt.Errorf("%s %s: the handler wrote no answer", r.Method, r.URL.Path))
		}
		s.metrics.observe(r, rec.status, time.Since(start))
		level := slog.LevelDebug
		if rec.status >= 400 {
			level = slog.LevelInfo
		}
		s.log.Log(r.Context(), level, "api request", "method", r.Method, "path", r.URL.Path,
			"status", rec.status, "duration", time.Since(start).Round(time.Microsecond))
	})
}

// statusRecorder remembers the status code and whether anything was
// written; it forwards Flush and Unwrap so streaming, full duplex and
// hijacking keep working through it.
type statusRecorder struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (r *statusRecorder) WriteHeader(code int) {
	if !r.wrote {
		r.status = code
	}
	if code >= 200 || code == http.StatusSwitchingProtocols {
		r.wrote = true // informational statuses come before the answer
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(p []byte) (int, error) {
	r.wrote = true
	return r.ResponseWriter.Write(p)
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (r *statusRecorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// FlushError flushes and reports a failure, which Flush cannot: through an
// http.ResponseController a handler learns that its client is gone.
func (r *statusRecorder) FlushError() error {
	return http.NewResponseController(r.ResponseWriter).Flush()
}

// writeJSON writes v with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// writeError maps err's class to its status and writes {"error": "..."}.
// This is the only place error classes become status codes.
//
// It always writes: even when the request was cancelled (its caller hung
// up, or the daemon is stopping) and nobody may be listening, the answer
// is an error status, never the empty 200 that net/http would send for a
// handler that wrote nothing.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil && api.StatusOf(err) == http.StatusInternalServerError {
		err = fmt.Errorf("%w: request cancelled: %w", api.ErrUnavailable, err)
	}
	status := api.StatusOf(err)
	if status == http.StatusInternalServerError {
		s.log.Error("api request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	writeJSON(w, status, api.ErrorResponse{Error: err.Error()})
}

// writeText writes a short text/plain body, as lifecycle endpoints do.
func writeText(w http.ResponseWriter, status int, text string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	w.Write([]byte(text))
}
