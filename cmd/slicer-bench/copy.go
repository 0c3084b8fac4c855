package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/client"
)

// copySize is what each copy sample moves.
const copySize = 64 << 20

// throughput is one copy measure: its samples in MiB/s.
type throughput struct {
	name    string
	samples []float64
}

// measureCopy times 64 MiB copies into and out of host's VM through the
// public client (cp-v1 binary), and the same bytes through a port-forward
// tunnel to a guest process that counts them (in), or from a guest HTTP
// server sending the seeded file (out). Files live on the VM's disk, not
// in its tmpfs /tmp.
func measureCopy(ctx context.Context, c *client.Client, host, tmp string, n int) ([]throughput, error) {
	src := filepath.Join(tmp, "copy-src.bin")
	if err := writeRandomFile(src, copySize); err != nil {
		return nil, err
	}
	root := new(uint32)
	// The guest's copy of the file is the raw baseline's source too. It is
	// in /srv/www, which the guest's default user may read: the client's
	// download acts as that user.
	if err := c.CpToVM(ctx, host, src, "/srv/www/bench.bin", client.CopyOptions{UID: root, GID: root}); err != nil {
		return nil, fmt.Errorf("seed copy: %w", err)
	}
	web, err := c.ExecBackground(ctx, host, &api.ExecRequest{Command: "httpd", Args: []string{"-f", "-p", "127.0.0.1:9101", "-h", "/srv/www"}, UID: root})
	if err != nil {
		return nil, fmt.Errorf("start guest httpd: %w", err)
	}
	defer stopBackground(ctx, c, host, web.ExecID)

	in := throughput{name: "(f) cp 64 MiB into the VM"}
	out := throughput{name: "(g) cp 64 MiB out of the VM"}
	rawIn := throughput{name: "(h) forward tunnel in, to nc"}
	rawOut := throughput{name: "(i) forward tunnel out, from httpd"}
	dst := filepath.Join(tmp, "copy-dst.bin")
	for range n {
		d, err := timed(func() error {
			return c.CpToVM(ctx, host, src, "/root/bench-in.bin", client.CopyOptions{UID: root, GID: root})
		})
		if err != nil {
			return nil, fmt.Errorf("cp in: %w", err)
		}
		in.add(d)
		d, err = timed(func() error { return c.CpFromVM(ctx, host, "/srv/www/bench.bin", dst, client.CopyOptions{}) })
		if err != nil {
			return nil, fmt.Errorf("cp out: %w", err)
		}
		out.add(d)
		os.Remove(dst)
		if d, err = rawSend(ctx, c, host, src); err != nil {
			return nil, fmt.Errorf("raw in: %w", err)
		}
		rawIn.add(d)
		if d, err = rawFetch(ctx, c, host); err != nil {
			return nil, fmt.Errorf("raw out: %w", err)
		}
		rawOut.add(d)
	}
	return []throughput{in, out, rawIn, rawOut}, nil
}

func (t *throughput) add(d time.Duration) {
	t.samples = append(t.samples, float64(copySize)/(1<<20)/d.Seconds())
}

func timed(f func() error) (time.Duration, error) {
	start := time.Now()
	err := f()
	return time.Since(start), err
}

// rawSend streams src through a tunnel into a guest nc that hands it to
// wc -c, and times it until nc has exited (it has read everything).
func rawSend(ctx context.Context, c *client.Client, host, src string) (time.Duration, error) {
	sink, err := c.ExecBackground(ctx, host, &api.ExecRequest{Command: "nc", Args: []string{"-l", "-p", "9100", "-e", "wc", "-c"}, UID: new(uint32)})
	if err != nil {
		return 0, err
	}
	defer c.ExecDelete(ctx, host, sink.ExecID)
	var conn net.Conn
	for conn == nil { // until nc listens
		if conn, err = c.DialForward(ctx, host, "127.0.0.1:9100"); err != nil {
			if ctx.Err() != nil {
				return 0, err
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	f, err := os.Open(src)
	if err != nil {
		conn.Close()
		return 0, err
	}
	defer f.Close()
	start := time.Now()
	_, err = io.CopyBuffer(conn, f, make([]byte, 256<<10))
	conn.Close()
	if err != nil {
		return 0, err
	}
	res, err := c.ExecWaitExit(ctx, host, sink.ExecID, 5*time.Minute)
	if err != nil || res.Running {
		return 0, fmt.Errorf("guest nc did not finish: %+v %v", res, err)
	}
	return time.Since(start), nil
}

// rawFetch downloads the seeded file from the guest's httpd through a
// tunnel.
func rawFetch(ctx context.Context, c *client.Client, host string) (time.Duration, error) {
	start := time.Now()
	conn, err := c.DialForward(ctx, host, "127.0.0.1:9101")
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /bench.bin HTTP/1.0\r\nHost: bench\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReaderSize(conn, 256<<10), nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	n, err := io.CopyBuffer(io.Discard, resp.Body, make([]byte, 256<<10))
	if err != nil {
		return 0, err
	}
	if n != copySize {
		return 0, fmt.Errorf("got %d bytes, want %d", n, copySize)
	}
	return time.Since(start), nil
}

func stopBackground(ctx context.Context, c *client.Client, host, id string) {
	c.ExecKill(ctx, host, id, api.ExecKillRequest{Signal: "KILL"})
	c.ExecWaitExit(ctx, host, id, time.Minute)
	c.ExecDelete(ctx, host, id)
}

func writeRandomFile(p string, n int) error {
	b := make([]byte, n)
	rand.Read(b)
	return os.WriteFile(p, b, 0o644)
}
