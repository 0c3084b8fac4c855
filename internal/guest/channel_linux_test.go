package guest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"

	"github.com/openslicer/openslicer/internal/agent"
)

// TestChannelProbes moves bytes through the probes both ways and checks
// that every byte is counted, and that a bad size is refused.
func TestChannelProbes(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	const n = 3<<20 + 5
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://agent"+agent.PathChannelSink, bytes.NewReader(make([]byte, n)))
	resp, err := h.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]int64
	json.NewDecoder(resp.Body).Decode(&got)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || got["bytes"] != n {
		t.Errorf("sink = %d %v, want 200 and %d bytes", resp.StatusCode, got, n)
	}

	for _, tt := range []struct {
		query  string
		status int
		size   int64
	}{
		{"bytes=3145733", http.StatusOK, n},
		{"bytes=0", http.StatusOK, 0},
		{"bytes=-1", http.StatusBadRequest, -1},
		{"bytes=x", http.StatusBadRequest, -1},
		{"bytes=2147483648", http.StatusBadRequest, -1},
	} {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://agent"+agent.PathChannelSource+"?"+tt.query, nil)
		resp, err := h.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		size, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.status || (tt.size >= 0 && size != tt.size) {
			t.Errorf("source %s = %d with %d bytes, want %d with %d", tt.query, resp.StatusCode, size, tt.status, tt.size)
		}
	}
}
