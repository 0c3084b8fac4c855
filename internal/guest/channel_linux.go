package guest

import (
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/agent"
)

// maxChannelProbe bounds what one source request sends.
const maxChannelProbe = 1 << 30

// routeChannel registers the channel probes: they move bytes through the
// agent channel and touch nothing else, so the benchmark can put the raw
// throughput of the channel next to that of the operations built on it.
func (s *Server) routeChannel(mux *http.ServeMux) {
	mux.HandleFunc("POST "+agent.PathChannelSink, s.channelSink)
	mux.HandleFunc("GET "+agent.PathChannelSource, s.channelSource)
}

// channelSink reads the request body to the end and answers with its size.
// A body that breaks off is the caller's fault: 400, as a copy says it.
func (s *Server) channelSink(w http.ResponseWriter, r *http.Request) {
	n, err := io.CopyBuffer(io.Discard, r.Body, make([]byte, 256<<10))
	if err != nil {
		agent.WriteError(w, fmt.Errorf("%w: read body after %d bytes: %v", api.ErrInvalid, n, err))
		return
	}
	agent.WriteJSON(w, http.StatusOK, map[string]int64{"bytes": n})
}

// channelSource answers with ?bytes=N zero bytes.
func (s *Server) channelSource(w http.ResponseWriter, r *http.Request) {
	n, err := strconv.ParseInt(r.URL.Query().Get("bytes"), 10, 64)
	if err != nil || n < 0 || n > maxChannelProbe {
		agent.WriteError(w, fmt.Errorf("%w: bytes=%q: want 0 to %d", api.ErrInvalid, r.URL.Query().Get("bytes"), maxChannelProbe))
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
	buf := make([]byte, 256<<10)
	for n > 0 {
		chunk := buf[:min(int64(len(buf)), n)]
		if _, err := w.Write(chunk); err != nil {
			return // the caller went away
		}
		n -= int64(len(chunk))
	}
}
