package server

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// Headers a guest operation carries to the agent, and back from it. The
// agent serves the public wire format of these operations, so everything
// else about the request (method, query, body) passes through as it is.
var (
	guestRequestHeaders  = []string{"Content-Type", "Accept", "Last-Event-ID", "X-Slicer-Unpacked-Size"}
	guestResponseHeaders = []string{"Content-Type", "Content-Length", "Cache-Control"}
)

// guestCopyBuffer is the size of the buffer a guest answer is streamed
// through; each read is written and flushed at once, so NDJSON frames and
// server-sent events reach the caller as the agent writes them.
const guestCopyBuffer = 256 << 10

// guest returns the handler that passes a request through to the agent
// route target, in which "{id}" stands for the request's id path value.
func (s *Server) guest(target string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		host := r.PathValue("hostname")
		path := strings.ReplaceAll(target, "{id}", url.PathEscape(r.PathValue("id")))
		body := trackGuestBody(r)
		out, err := guestRequest(r, path)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		resp, err := s.vms.GuestDo(host, out)
		defer body.answerEarly(w)()
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		defer resp.Body.Close()
		for _, h := range guestResponseHeaders {
			if v := resp.Header.Get(h); v != "" {
				w.Header().Set(h, v)
			}
		}
		for k, v := range resp.Header {
			if strings.HasPrefix(k, "X-Slicer-") {
				w.Header()[k] = v
			}
		}
		w.WriteHeader(resp.StatusCode)
		// The caller has its answer now, even when the body (a watch, a
		// followed log) has nothing to say for a while.
		http.NewResponseController(w).Flush()
		if err := copyFlushing(w, resp.Body); err != nil {
			s.log.Debug("guest answer ended early", "vm", host, "path", path, "err", err)
			if errors.Is(err, errGuestBroke) {
				// Cut the connection rather than end the body cleanly: a
				// truncated download must not look complete.
				panic(http.ErrAbortHandler)
			}
		}
	}
}

// guestRequest is the request for the agent: r's method, query, body and
// the headers the operation needs, on the agent route path.
func guestRequest(r *http.Request, path string) (*http.Request, error) {
	var body io.Reader
	if r.ContentLength != 0 {
		body = r.Body
	}
	out, err := http.NewRequestWithContext(r.Context(), r.Method, "http://agent"+path, body)
	if err != nil {
		return nil, err
	}
	out.URL.RawQuery = r.URL.RawQuery
	out.ContentLength = r.ContentLength
	if body == nil {
		out.ContentLength = 0
	}
	for _, h := range guestRequestHeaders {
		if v := r.Header.Get(h); v != "" {
			out.Header.Set(h, v)
		}
	}
	return out, nil
}

// errGuestBroke marks a guest answer that broke off, as opposed to a
// caller that went away.
var errGuestBroke = errors.New("guest answer broke off")

// copyFlushing copies src to w, flushing after every read. A failed read
// of src is wrapped in errGuestBroke.
func copyFlushing(w http.ResponseWriter, src io.Reader) error {
	rc := http.NewResponseController(w)
	buf := make([]byte, guestCopyBuffer)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return werr
			}
			if ferr := rc.Flush(); ferr != nil {
				return ferr
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: %w", errGuestBroke, err)
		}
	}
}
