package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/openslicer/openslicer/internal/agent"
	"github.com/openslicer/openslicer/internal/hypervisor/qemu"
	"github.com/openslicer/openslicer/internal/image"
)

// measureChannel boots one VM without the daemon, as (a) does, and moves
// 64 MiB each way through its agent channel's probes: virtio-serial, yamux
// and HTTP, with no daemon, no API and no files. It is the ceiling the
// copy figures are compared with.
func measureChannel(ctx context.Context, img *image.Image, dir string, n int, accel qemu.Accel, log *slog.Logger) ([]throughput, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	spec, err := rawSpec(ctx, img, dir)
	if err != nil {
		return nil, err
	}
	args, err := qemu.Args(spec, accel)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", foreground(args)...)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	sock := filepath.Join(dir, "agent.sock")
	c := agent.NewClient(func(ctx context.Context) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}, log)
	defer c.Close()
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := c.WaitReady(wctx); err != nil {
		return nil, err
	}

	in := throughput{name: "(d) agent channel in, bare"}
	out := throughput{name: "(e) agent channel out, bare"}
	payload := make([]byte, copySize)
	for range n {
		d, err := timed(func() error {
			return probe(ctx, c, http.MethodPost, "/v1/channel/sink", bytes.NewReader(payload))
		})
		if err != nil {
			return nil, fmt.Errorf("sink: %w", err)
		}
		in.add(d)
		d, err = timed(func() error {
			return probe(ctx, c, http.MethodGet, "/v1/channel/source?bytes="+strconv.Itoa(copySize), nil)
		})
		if err != nil {
			return nil, fmt.Errorf("source: %w", err)
		}
		out.add(d)
	}
	return []throughput{in, out}, nil
}

// probe sends one request to the agent and reads the answer to the end.
func probe(ctx context.Context, c *agent.Client, method, target string, body io.Reader) error {
	req, err := http.NewRequestWithContext(ctx, method, "http://agent"+target, body)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.CopyBuffer(io.Discard, resp.Body, make([]byte, 256<<10)); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s", method, target, resp.Status)
	}
	return nil
}
