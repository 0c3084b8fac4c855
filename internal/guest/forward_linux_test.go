package guest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/openslicer/openslicer/api"
)

// serveUpstream accepts connections on ln and hands each to handle, until
// the test ends; then it closes ln and waits for the handlers.
func serveUpstream(t *testing.T, ln net.Listener, handle func(net.Conn)) {
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				handle(c)
			}()
		}
	}()
}

// echo copies what it reads back until EOF, then closes its sending half.
func echo(c net.Conn) {
	_, _ = io.Copy(c, c)
	_ = c.(closeWriter).CloseWrite()
}

// echoUpstreams starts a TCP and a unix-socket echo server and returns
// their upstream strings.
func echoUpstreams(t *testing.T) map[string]string {
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveUpstream(t, tcp, echo)
	sock := filepath.Join(t.TempDir(), "echo.sock")
	uds, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	serveUpstream(t, uds, echo)
	return map[string]string{"tcp": tcp.Addr().String(), "unix": "unix:" + sock}
}

// roundTrip sends payload through a tunnel, half-closes it and returns
// everything read back until EOF.
func roundTrip(conn net.Conn, payload []byte) ([]byte, error) {
	_ = conn.SetReadDeadline(time.Now().Add(hangGuard))
	werr := make(chan error, 1)
	go func() {
		_, err := conn.Write(payload)
		if err == nil {
			err = conn.(closeWriter).CloseWrite()
		}
		werr <- err
	}()
	got, err := io.ReadAll(conn)
	if err == nil {
		err = <-werr
	}
	return got, err
}

func TestForwardEcho(t *testing.T) {
	h := newHarness(t)
	for name, upstream := range echoUpstreams(t) {
		t.Run(name, func(t *testing.T) {
			const tunnels = 20
			var wg sync.WaitGroup
			for i := range tunnels {
				wg.Add(1)
				go func() {
					defer wg.Done()
					payload := bytes.Repeat([]byte(fmt.Sprintf("tunnel %d of %s;", i, name)), 4000+i*100)
					conn, err := h.client.DialForward(context.Background(), upstream)
					if err != nil {
						t.Errorf("tunnel %d: DialForward(%q): %v", i, upstream, err)
						return
					}
					defer conn.Close()
					got, err := roundTrip(conn, payload)
					if err != nil || !bytes.Equal(got, payload) {
						t.Errorf("tunnel %d: got %d bytes (%v), want the %d sent back", i, len(got), err, len(payload))
					}
				}()
			}
			wg.Wait()
		})
	}
}

// TestForwardUpstreamCloses checks that an upstream that closes its
// connection ends the tunnel: the host reads what it sent, then EOF.
func TestForwardUpstreamCloses(t *testing.T) {
	h := newHarness(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveUpstream(t, ln, func(c net.Conn) { _, _ = c.Write([]byte("bye\n")) })
	conn, err := h.client.DialForward(context.Background(), ln.Addr().String())
	if err != nil {
		t.Fatalf("DialForward: %v", err)
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(hangGuard))
	got, err := io.ReadAll(conn)
	if err != nil || string(got) != "bye\n" {
		t.Errorf("read %q, %v; want \"bye\\n\" then EOF", got, err)
	}
}

// TestForwardHostCloses checks that a host that closes the tunnel ends the
// upstream's connection too.
func TestForwardHostCloses(t *testing.T) {
	h := newHarness(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ended := make(chan error, 1)
	serveUpstream(t, ln, func(c net.Conn) {
		_ = c.SetReadDeadline(time.Now().Add(hangGuard))
		_, err := io.Copy(io.Discard, c)
		ended <- err
	})
	conn, err := h.client.DialForward(context.Background(), ln.Addr().String())
	if err != nil {
		t.Fatalf("DialForward: %v", err)
	}
	if _, err := conn.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if err := <-ended; err != nil {
		t.Errorf("upstream read ended with %v, want EOF", err)
	}
}

func TestForwardErrorsBeforeUpgrade(t *testing.T) {
	h := newHarness(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := ln.Addr().String()
	ln.Close()
	for _, tc := range []struct {
		upstream string
		want     error
	}{
		{closedPort, api.ErrUnavailable},
		{"unix:" + filepath.Join(t.TempDir(), "none.sock"), api.ErrUnavailable},
		{"no-port", api.ErrInvalid},
		{"", api.ErrInvalid},
	} {
		conn, err := h.client.DialForward(context.Background(), tc.upstream)
		if err == nil {
			conn.Close()
			t.Errorf("DialForward(%q) succeeded, want %v", tc.upstream, tc.want)
			continue
		}
		var ae *api.Error
		if !errors.Is(err, tc.want) || !errors.As(err, &ae) {
			t.Errorf("DialForward(%q) error = %v, want an *api.Error of class %v", tc.upstream, err, tc.want)
		}
	}
}
