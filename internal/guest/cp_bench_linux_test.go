package guest

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"sync"
	"testing"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/agent"
)

// BenchmarkCopy64MiB uploads and downloads a 64 MiB file through the
// agent over the in-process channel.
func BenchmarkCopy64MiB(b *testing.B) {
	data := make([]byte, 64<<20)
	rand.Read(data)
	h := benchClient(b)
	dst := filepath.Join(b.TempDir(), "blob")
	b.Run("upload", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			q := asMe(url.Values{"path": {dst}, "mode": {api.CopyModeBinary}})
			req, _ := http.NewRequest(http.MethodPost, "http://agent"+agent.PathCopy+"?"+q.Encode(), struct{ io.Reader }{bytes.NewReader(data)})
			resp, err := h.Do(req)
			if err != nil || resp.StatusCode != http.StatusOK {
				b.Fatalf("upload: %v %v", resp, err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
	b.Run("download", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			req, _ := http.NewRequest(http.MethodGet, "http://agent"+agent.PathCopy+"?"+asMe(url.Values{"path": {dst}}).Encode(), nil)
			resp, err := h.Do(req)
			if err != nil || resp.StatusCode != http.StatusOK {
				b.Fatalf("download: %v %v", resp, err)
			}
			n, _ := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if n != int64(len(data)) {
				b.Fatalf("downloaded %d bytes", n)
			}
		}
	})
}

// benchClient is a Client of an in-process Server over a unix socket; the
// benchmark's cleanup stops both.
func benchClient(b *testing.B) *agent.Client {
	log := slog.New(slog.DiscardHandler)
	l, err := net.Listen("unix", filepath.Join(b.TempDir(), "agent.sock"))
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { NewServer(log).ServeConn(ctx, conn) })
		}
	})
	c := agent.NewClient(func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", l.Addr().String())
	}, log)
	b.Cleanup(func() {
		c.Close()
		cancel()
		l.Close()
		wg.Wait()
	})
	return c
}
