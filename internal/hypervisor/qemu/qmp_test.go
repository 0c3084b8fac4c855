package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// fakeQMP is a QMP server on a unix socket that speaks like QEMU 7.2
// enough to exercise the client. It records every request it reads.
type fakeQMP struct {
	path string
	ln   net.Listener

	mu       sync.Mutex
	requests []map[string]any
}

func newFakeQMP(t *testing.T) *fakeQMP {
	t.Helper()
	f := &fakeQMP{path: filepath.Join(t.TempDir(), "qmp.sock")}
	ln, err := net.Listen("unix", f.path)
	if err != nil {
		t.Fatal(err)
	}
	f.ln = ln
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); f.serve(conn) }()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return f
}

func (f *fakeQMP) serve(conn net.Conn) {
	defer conn.Close()
	enc := json.NewEncoder(conn)
	dec := json.NewDecoder(conn)
	enc.Encode(map[string]any{"QMP": map[string]any{"version": map[string]any{}, "capabilities": []string{"oob"}}})
	for {
		var req map[string]any
		if err := dec.Decode(&req); err != nil {
			return
		}
		f.mu.Lock()
		f.requests = append(f.requests, req)
		f.mu.Unlock()
		id := req["id"]
		switch req["execute"] {
		case "qmp_capabilities":
			enc.Encode(map[string]any{"return": map[string]any{}, "id": id})
		case "query-status":
			// An event and a reply to some other id come first.
			enc.Encode(map[string]any{"event": "RESUME", "timestamp": map[string]any{"seconds": 1, "microseconds": 2}})
			enc.Encode(map[string]any{"return": map[string]any{"status": "stale"}, "id": "other"})
			enc.Encode(map[string]any{"return": map[string]any{"status": "running", "running": true}, "id": id})
		case "echo":
			enc.Encode(map[string]any{"return": req["arguments"], "id": id})
		case "emit-first":
			// Events, then the reply: the events arrive while the
			// command waits for it.
			enc.Encode(map[string]any{"event": "VSERPORT_CHANGE", "data": map[string]any{"id": "other", "open": true}})
			enc.Encode(map[string]any{"event": "VSERPORT_CHANGE", "data": map[string]any{"id": "agentport", "open": false}})
			enc.Encode(map[string]any{"event": "RESUME"})
			enc.Encode(map[string]any{"return": map[string]any{}, "id": id})
		case "hang":
			// never answers
		default:
			enc.Encode(map[string]any{"error": map[string]any{
				"class": "CommandNotFound", "desc": fmt.Sprintf("The command %v has not been found", req["execute"]),
			}, "id": id})
		}
	}
}

func (f *fakeQMP) commands() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, r := range f.requests {
		out = append(out, fmt.Sprint(r["execute"]))
	}
	return out
}

func TestQMP(t *testing.T) {
	f := newFakeQMP(t)
	ctx := context.Background()
	q, err := DialQMP(ctx, f.path)
	if err != nil {
		t.Fatalf("DialQMP: %v", err)
	}
	defer q.Close()

	ret, err := q.Execute(ctx, "query-status", nil)
	if err != nil {
		t.Fatalf("Execute(query-status): %v", err)
	}
	var status struct{ Status string }
	if err := json.Unmarshal(ret, &status); err != nil || status.Status != "running" {
		t.Errorf("Execute(query-status) = %s, want status running", ret)
	}

	ret, err = q.Execute(ctx, "echo", map[string]any{"uri": "exec:cat"})
	if err != nil {
		t.Fatalf("Execute(echo): %v", err)
	}
	if string(ret) != `{"uri":"exec:cat"}` {
		t.Errorf("Execute(echo) = %s, want the arguments back", ret)
	}

	_, err = q.Execute(ctx, "bogus", nil)
	var qerr *QMPError
	if !errors.As(err, &qerr) || qerr.Class != "CommandNotFound" {
		t.Fatalf("Execute(bogus) error = %v, want a CommandNotFound QMPError", err)
	}
	// An error reply leaves the session usable.
	if _, err := q.Execute(ctx, "query-status", nil); err != nil {
		t.Errorf("Execute after an error reply: %v", err)
	}

	want := []string{"qmp_capabilities", "query-status", "echo", "bogus", "query-status"}
	if diff := cmp.Diff(want, f.commands()); diff != "" {
		t.Errorf("commands the server read (-want +got):\n%s", diff)
	}
	f.mu.Lock()
	_, hasArgs := f.requests[1]["arguments"]
	f.mu.Unlock()
	if hasArgs {
		t.Errorf("query-status sent with arguments; want none for nil args")
	}
}

func TestQMPCancel(t *testing.T) {
	f := newFakeQMP(t)
	q, err := DialQMP(context.Background(), f.path)
	if err != nil {
		t.Fatalf("DialQMP: %v", err)
	}
	defer q.Close()

	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := q.Execute(ctx, "hang", nil)
		errc <- err
	}()
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("Execute(hang) after cancel = %v, want context.Canceled", err)
	}
	// The session is broken now: a reply may still be on its way.
	if _, err := q.Execute(context.Background(), "query-status", nil); err == nil {
		t.Errorf("Execute on a broken session succeeded; want an error")
	}
}

func TestQMPNotQMP(t *testing.T) {
	path := filepath.Join(t.TempDir(), "not-qmp.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		conn.Write([]byte(`{"hello": "world"}` + "\n"))
	}()
	if q, err := DialQMP(context.Background(), path); err == nil {
		q.Close()
		t.Fatal("DialQMP to a server without a QMP greeting succeeded")
	}
}

// TestQMPTakeEvent: events that arrive while a command waits for its
// reply are kept, and taken once each, oldest first.
func TestQMPTakeEvent(t *testing.T) {
	f := newFakeQMP(t)
	ctx := context.Background()
	q, err := DialQMP(ctx, f.path)
	if err != nil {
		t.Fatalf("DialQMP: %v", err)
	}
	defer q.Close()
	agentPort := func(data json.RawMessage) bool {
		var ev struct{ ID string }
		return json.Unmarshal(data, &ev) == nil && ev.ID == "agentport"
	}
	if _, ok := q.TakeEvent("VSERPORT_CHANGE", agentPort); ok {
		t.Fatal("TakeEvent before any command found an event")
	}
	if _, err := q.Execute(ctx, "emit-first", nil); err != nil {
		t.Fatalf("Execute(emit-first): %v", err)
	}
	data, ok := q.TakeEvent("VSERPORT_CHANGE", agentPort)
	if !ok || string(data) != `{"id":"agentport","open":false}` {
		t.Errorf("TakeEvent = %s, %t; want the agentport event's data", data, ok)
	}
	if _, ok := q.TakeEvent("VSERPORT_CHANGE", agentPort); ok {
		t.Error("TakeEvent took the same event twice")
	}
	if data, ok := q.TakeEvent("VSERPORT_CHANGE", nil); !ok || string(data) != `{"id":"other","open":true}` {
		t.Errorf("TakeEvent with no filter = %s, %t; want the kept event of the other port", data, ok)
	}
	if _, ok := q.TakeEvent("RESUME", nil); !ok {
		t.Error("TakeEvent(RESUME) found nothing")
	}
}
