package server

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/openslicer/openslicer/api"
)

// notBuilt answers a documented route this daemon does not build yet: 501,
// naming the route and the feature it belongs to, so a client learns what
// is missing instead of reading a 404 as "no such VM".
func (s *Server) notBuilt(feature string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, fmt.Errorf("%s %s (%s) is not supported by this daemon yet: %w", r.Method, r.Pattern, feature, api.ErrNotImplemented))
	}
}

// routeMethods are the methods noRoute tries when a request's method has
// no route.
var routeMethods = []string{
	http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut,
	http.MethodPatch, http.MethodDelete, http.MethodOptions,
}

// noRoute returns the handler for requests no route of mux takes: 405 with
// an Allow header when the path has routes for other methods, 404
// otherwise. It is registered on mux as "/", the pattern every request
// matches when no other does.
func (s *Server) noRoute(mux *http.ServeMux) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		allow := allowedMethods(mux, r)
		if len(allow) == 0 {
			s.writeError(w, r, fmt.Errorf("no route for %s %s: %w", r.Method, r.URL.Path, api.ErrNotFound))
			return
		}
		w.Header().Set("Allow", strings.Join(allow, ", "))
		s.writeError(w, r, fmt.Errorf("%w: %s %s: this path takes %s", api.ErrMethodNotAllowed, r.Method, r.URL.Path, strings.Join(allow, ", ")))
	}
}

// allowedMethods returns the methods for which mux has a route for r's
// path, other than the catch-all "/".
func allowedMethods(mux *http.ServeMux, r *http.Request) []string {
	var allow []string
	for _, m := range routeMethods {
		probe := &http.Request{Method: m, URL: r.URL, Host: r.Host, Header: http.Header{}}
		if _, pattern := mux.Handler(probe); pattern != "/" && pattern != "" {
			allow = append(allow, m)
		}
	}
	return allow
}
