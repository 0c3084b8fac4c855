//go:build unix

package qemu

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestQMPExecuteFD: the descriptor travels with the command, and the
// server's copy refers to the same open file.
func TestQMPExecuteFD(t *testing.T) {
	path := filepath.Join(t.TempDir(), "qmp.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan error, 1)
	go func() { got <- serveGetfd(ln) }()

	ctx := context.Background()
	q, err := DialQMP(ctx, path)
	if err != nil {
		t.Fatalf("DialQMP: %v", err)
	}
	defer q.Close()
	file, err := os.CreateTemp(t.TempDir(), "state")
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	if _, err := q.ExecuteFD(ctx, "getfd", map[string]string{"fdname": "x"}, int(file.Fd())); err != nil {
		t.Fatalf("ExecuteFD: %v", err)
	}
	if err := <-got; err != nil {
		t.Fatalf("server: %v", err)
	}
	b, err := os.ReadFile(file.Name())
	if err != nil || string(b) != "written by the server" {
		t.Errorf("file holds %q (error %v), want what the server wrote through the passed descriptor", b, err)
	}
}

// serveGetfd plays QEMU for one session: greeting, qmp_capabilities, then
// a getfd whose descriptor it writes through before answering.
func serveGetfd(ln *net.UnixListener) error {
	conn, err := ln.AcceptUnix()
	if err != nil {
		return err
	}
	defer conn.Close()
	enc := json.NewEncoder(conn)
	enc.Encode(map[string]any{"QMP": map[string]any{"version": map[string]any{}}})
	var pending []byte
	var fds []int
	for commands := 0; commands < 2; {
		buf, oob := make([]byte, 4096), make([]byte, 64)
		n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
		if err != nil {
			return err
		}
		msgs, err := syscall.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			return err
		}
		for _, m := range msgs {
			rights, err := syscall.ParseUnixRights(&m)
			if err != nil {
				return err
			}
			fds = append(fds, rights...)
		}
		pending = append(pending, buf[:n]...)
		for {
			line, rest, ok := bytes.Cut(pending, []byte("\n"))
			if !ok {
				break
			}
			pending = rest
			var req struct {
				Execute string
				ID      json.RawMessage
			}
			if err := json.Unmarshal(line, &req); err != nil {
				return err
			}
			commands++
			if req.Execute == "getfd" {
				if len(fds) != 1 {
					return fmt.Errorf("getfd came with %d descriptors, want 1", len(fds))
				}
				f := os.NewFile(uintptr(fds[0]), "passed")
				_, err := f.WriteString("written by the server")
				f.Close()
				if err != nil {
					return err
				}
			}
			enc.Encode(map[string]any{"return": map[string]any{}, "id": req.ID})
		}
	}
	return nil
}
