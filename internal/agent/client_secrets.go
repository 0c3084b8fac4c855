package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/openslicer/openslicer/api"
)

// PutSecrets hands the agent the complete set of secrets the VM should
// have; the agent writes them to /run/slicer/secrets and removes any file
// there that files does not name. A name or mode the agent refuses is an
// error that unwraps to api.ErrInvalid, and nothing is written.
func (c *Client) PutSecrets(ctx context.Context, files []SecretFile) error {
	if files == nil {
		files = []SecretFile{} // the empty set, not null
	}
	return c.doJSON(ctx, http.MethodPut, PathSecrets, files, nil)
}

// ServeGuest sets the handler for the requests the guest sends the host,
// one per stream the guest opens on the session (the agent's pull of its
// secrets, answered by HostSecretsHandler). Call it before the client's
// first use; without it the client answers such requests 501.
func (c *Client) ServeGuest(h http.Handler) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.guest = h
}

// serveGuest answers the streams the guest opens on mux with h (nil: 501)
// until the session ends. The yamux session is the listener: its Accept
// returns those streams.
func (c *Client) serveGuest(mux *yamux.Session, h http.Handler) {
	if h == nil {
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			WriteError(w, fmt.Errorf("%s %s: the host serves no requests from this guest: %w", r.Method, r.URL.Path, api.ErrNotImplemented))
		})
	}
	hs := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: time.Minute,
		ErrorLog:          slog.NewLogLogger(c.log.Handler(), slog.LevelDebug),
	}
	err := hs.Serve(mux) // returns once the session has ended
	c.log.Debug("stopped serving guest requests", "err", err)
}

// HostSecretsHandler answers the guest's pull, GET /v1/host/secrets, with
// the JSON []SecretFile list returns: the set of the VM whose client serves
// it (Client.ServeGuest). An error of list is answered with the status of
// its api error class.
func HostSecretsHandler(list func(ctx context.Context) ([]SecretFile, error)) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+PathHostSecrets, func(w http.ResponseWriter, r *http.Request) {
		files, err := list(r.Context())
		if err != nil {
			WriteError(w, fmt.Errorf("list secrets for the guest: %w", err))
			return
		}
		if files == nil {
			files = []SecretFile{}
		}
		WriteJSON(w, http.StatusOK, files)
	})
	return mux
}
