package guest

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/openslicer/openslicer/internal/agent"
	"github.com/openslicer/openslicer/internal/agent/channel"
)

func TestFindPort(t *testing.T) {
	sys := t.TempDir()
	for dev, name := range map[string]string{"vport0p1": "org.qemu.guest_agent.0\n", "vport0p2": channel.PortName + "\n", "vport0p3": ""} {
		if err := os.MkdirAll(filepath.Join(sys, dev), 0o755); err != nil {
			t.Fatal(err)
		}
		if name != "" {
			if err := os.WriteFile(filepath.Join(sys, dev, "name"), []byte(name), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	got, err := findPort(sys, "/dev", channel.PortName)
	if err != nil || got != "/dev/vport0p2" {
		t.Errorf("findPort(%q) = %q, %v; want /dev/vport0p2", channel.PortName, got, err)
	}
	if got, err := findPort(sys, "/dev", "nope"); err == nil {
		t.Errorf("findPort(nope) = %q, want an error", got)
	}
	if got, err := findPort(filepath.Join(sys, "missing"), "/dev", channel.PortName); err == nil {
		t.Errorf("findPort in a missing dir = %q, want an error", got)
	}
}

// TestServeDeviceReopens serves the agent on a unix socket channel that
// appears late, and checks that a host going away is followed by the next
// host being served.
func TestServeDeviceReopens(t *testing.T) {
	log := testLogger(t)
	sock := filepath.Join(t.TempDir(), "agent.sock")
	srv := NewServer(log)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- srv.ServeDevice(ctx, sock) }()

	// The channel appears after the agent started looking for it.
	time.Sleep(50 * time.Millisecond)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dial := func(ctx context.Context) (net.Conn, error) {
		type result struct {
			c   net.Conn
			err error
		}
		ch := make(chan result, 1)
		go func() {
			c, err := ln.Accept()
			ch <- result{c, err}
		}()
		select {
		case r := <-ch:
			return r.c, r.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}

	for i := range 2 { // each host connection in turn
		c := agent.NewClient(dial, log)
		wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
		_, err := c.Health(wctx)
		wcancel()
		if err != nil {
			t.Fatalf("host %d: Health: %v", i+1, err)
		}
		c.Close() // the host goes away; the agent must serve the next one
	}

	cancel()
	if err := <-served; !errors.Is(err, context.Canceled) {
		t.Errorf("ServeDevice = %v, want context.Canceled once ctx ends", err)
	}
}

// eofConn is a host's end of the channel that reports when the agent has
// closed its end (a read fails).
type eofConn struct {
	net.Conn
	once   sync.Once
	closed chan struct{}
}

func (c *eofConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if err != nil {
		c.once.Do(func() { close(c.closed) })
	}
	return n, err
}

// TestServeDeviceRelease: a host's release is answered, then the agent
// closes its end of the channel by itself (the host has not gone away),
// and serves the next host after it.
func TestServeDeviceRelease(t *testing.T) {
	log := testLogger(t)
	sock := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srv := NewServer(log)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- srv.ServeDevice(ctx, sock) }()

	conns := make(chan *eofConn, 2)
	dial := func(context.Context) (net.Conn, error) {
		c, err := ln.Accept()
		if err != nil {
			return nil, err
		}
		ec := &eofConn{Conn: c, closed: make(chan struct{})}
		conns <- ec
		return ec, nil
	}
	first := agent.NewClient(dial, log)
	defer first.Close()
	if err := first.Release(ctx); err != nil {
		t.Fatalf("Release: %v", err)
	}
	select {
	case <-(<-conns).closed:
	case <-ctx.Done():
		t.Fatal("the agent did not close its end of the channel after the release")
	}

	second := agent.NewClient(dial, log)
	defer second.Close()
	if _, err := second.Health(ctx); err != nil {
		t.Fatalf("the next host after a release: Health: %v", err)
	}
	cancel()
	if err := <-served; !errors.Is(err, context.Canceled) {
		t.Errorf("ServeDevice = %v, want context.Canceled once ctx ends", err)
	}
}
