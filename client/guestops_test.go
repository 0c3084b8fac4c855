package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/go-cmp/cmp"

	"github.com/openslicer/openslicer/api"
)

// routeRecorder is an httptest server that answers each "METHOD /path" with a
// fixed status and body, and records what it was sent.
type routeRecorder struct {
	mu     sync.Mutex
	reqs   []string
	bodies []string
}

func (rec *routeRecorder) server(t *testing.T, routes map[string]func(w http.ResponseWriter, r *http.Request)) *httptest.Server {
	mux := http.NewServeMux()
	for pattern, h := range routes {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			rec.mu.Lock()
			rec.reqs = append(rec.reqs, r.Method+" "+r.URL.RequestURI())
			rec.bodies = append(rec.bodies, string(b))
			rec.mu.Unlock()
			h(w, r)
		})
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func replyJSON(status int, v any) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(v)
	}
}

func TestBackgroundExec(t *testing.T) {
	code := 3
	rec := &routeRecorder{}
	srv := rec.server(t, map[string]func(http.ResponseWriter, *http.Request){
		"POST /vm/vm-1/exec":                  replyJSON(201, api.ExecBackgroundResponse{ExecID: "ex_1", PID: 42, RingBytes: 1 << 20}),
		"GET /vm/vm-1/exec":                   replyJSON(200, []api.ExecBackgroundInfo{{ExecID: "ex_1", Running: true}}),
		"GET /vm/vm-1/exec/ex_1":              replyJSON(200, api.ExecBackgroundInfo{ExecID: "ex_1", ExitCode: &code}),
		"POST /vm/vm-1/exec/ex_1/kill":        replyJSON(200, api.ExecKillResponse{ExecID: "ex_1", SignalSent: "TERM"}),
		"GET /vm/vm-1/exec/ex_1/wait-exit":    replyJSON(200, api.ExecWaitExitResponse{ExecID: "ex_1", ExitCode: &code}),
		"DELETE /vm/vm-1/exec/ex_1":           replyJSON(200, api.ExecDeleteResponse{ExecID: "ex_1", Reaped: true}),
		"DELETE /vm/vm-1/exec/ex_running":     replyJSON(409, api.ErrorResponse{Error: "still running"}),
		"GET /vm/vm-1/exec/ex_gone/wait-exit": replyJSON(410, api.ErrorResponse{Error: "reaped"}),
	})
	c := New(srv.URL, "")
	ctx := context.Background()
	uid := uint32(0)
	res, err := c.ExecBackground(ctx, "vm-1", &api.ExecRequest{Command: "sleep", Args: []string{"9"}, UID: &uid, RingBytes: 4096})
	if err != nil || res.ExecID != "ex_1" || res.PID != 42 {
		t.Fatalf("ExecBackground = %+v, %v", res, err)
	}
	if list, err := c.ExecList(ctx, "vm-1"); err != nil || len(list) != 1 || !list[0].Running {
		t.Errorf("ExecList = %+v, %v", list, err)
	}
	if info, err := c.ExecInfo(ctx, "vm-1", "ex_1"); err != nil || info.ExitCode == nil || *info.ExitCode != 3 {
		t.Errorf("ExecInfo = %+v, %v", info, err)
	}
	if _, err := c.ExecKill(ctx, "vm-1", "ex_1", api.ExecKillRequest{}); err != nil {
		t.Error(err)
	}
	if _, err := c.ExecKill(ctx, "vm-1", "ex_1", api.ExecKillRequest{Signal: "KILL", GraceMs: 100}); err != nil {
		t.Error(err)
	}
	if w, err := c.ExecWaitExit(ctx, "vm-1", "ex_1", 90*time.Second+500*time.Millisecond); err != nil || *w.ExitCode != 3 {
		t.Errorf("ExecWaitExit = %+v, %v", w, err)
	}
	if d, err := c.ExecDelete(ctx, "vm-1", "ex_1"); err != nil || !d.Reaped {
		t.Errorf("ExecDelete = %+v, %v", d, err)
	}
	if _, err := c.ExecDelete(ctx, "vm-1", "ex_running"); !errors.Is(err, api.ErrConflict) {
		t.Errorf("ExecDelete of a running exec = %v, want ErrConflict", err)
	}
	if _, err := c.ExecWaitExit(ctx, "vm-1", "ex_gone", 0); !errors.Is(err, api.ErrGone) {
		t.Errorf("ExecWaitExit of a reaped exec = %v, want ErrGone", err)
	}
	want := []string{
		"POST /vm/vm-1/exec?args=9&background=true&cmd=sleep&ring_bytes=4096&stdio=base64&uid=0",
		"GET /vm/vm-1/exec",
		"GET /vm/vm-1/exec/ex_1",
		"POST /vm/vm-1/exec/ex_1/kill",
		"POST /vm/vm-1/exec/ex_1/kill",
		"GET /vm/vm-1/exec/ex_1/wait-exit?timeout=90",
		"DELETE /vm/vm-1/exec/ex_1",
		"DELETE /vm/vm-1/exec/ex_running",
		"GET /vm/vm-1/exec/ex_gone/wait-exit",
	}
	if diff := cmp.Diff(want, rec.reqs); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
	// Kill sends a body only when options are set.
	if rec.bodies[3] != "" || rec.bodies[4] != `{"signal":"KILL","grace_ms":100}` {
		t.Errorf("kill bodies = %q, %q", rec.bodies[3], rec.bodies[4])
	}
}

func TestExecLogs(t *testing.T) {
	rec := &routeRecorder{}
	srv := rec.server(t, map[string]func(http.ResponseWriter, *http.Request){
		"GET /vm/vm-1/exec/ex_1/logs": func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintln(w, `{"id":1,"type":"gap","dropped_bytes":10,"dropped_frames":2,"message":"evicted","exit_code":0}`)
			fmt.Fprintln(w, `{"id":3,"type":"stdout","encoding":"base64","data":"aGk=","exit_code":0}`)
		},
	})
	stream, err := New(srv.URL, "").ExecLogs(context.Background(), "vm-1", "ex_1", ExecLogsOptions{Follow: true, FromID: 7})
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	var types []string
	for {
		f, err := stream.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("a log replay that ends without an exit frame is not an error: %v", err)
		}
		types = append(types, f.Type)
	}
	if diff := cmp.Diff([]string{"gap", "stdout"}, types); diff != "" {
		t.Errorf("frames (-want +got):\n%s", diff)
	}
	if rec.reqs[0] != "GET /vm/vm-1/exec/ex_1/logs?follow=true&from_id=7" {
		t.Errorf("request = %q", rec.reqs[0])
	}
}

func TestFS(t *testing.T) {
	mtime := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	rec := &routeRecorder{}
	srv := rec.server(t, map[string]func(http.ResponseWriter, *http.Request){
		"GET /vm/vm-1/fs/readdir": replyJSON(200, []api.FSInfo{{Name: "a", Type: "file", Size: 3, Mtime: mtime, Mode: "0644"}}),
		"GET /vm/vm-1/fs/stat": func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Query().Get("path") == "/nope" {
				replyJSON(404, api.ErrorResponse{Error: "no such file"})(w, r)
				return
			}
			_, _ = io.WriteString(w, `{"name":"a","type":"file","size":3,"mtime":"2026-01-02T03:04:05Z","mode":"0644"}`)
		},
		"POST /vm/vm-1/fs/mkdir":    replyJSON(200, struct{}{}),
		"DELETE /vm/vm-1/fs/remove": replyJSON(200, struct{}{}),
	})
	c := New(srv.URL, "")
	ctx := context.Background()
	if ents, err := c.ReadDir(ctx, "vm-1", "/tmp"); err != nil || len(ents) != 1 || !ents[0].Mtime.Equal(mtime) {
		t.Errorf("ReadDir = %+v, %v", ents, err)
	}
	if fi, err := c.Stat(ctx, "vm-1", "/tmp/a"); err != nil || !fi.Mtime.Equal(mtime) || fi.Mode != "0644" {
		t.Errorf("Stat = %+v, %v", fi, err)
	}
	if _, err := c.Stat(ctx, "vm-1", "/nope"); !errors.Is(err, os.ErrNotExist) || !errors.Is(err, api.ErrNotFound) {
		t.Errorf("Stat of a missing path = %v, want os.ErrNotExist", err)
	}
	if err := c.Mkdir(ctx, "vm-1", api.FSMkdirRequest{Path: "/tmp/d", Recursive: true, Mode: "0755"}); err != nil {
		t.Error(err)
	}
	if err := c.Remove(ctx, "vm-1", "/tmp/d", false); err != nil {
		t.Error(err)
	}
	want := []string{
		"GET /vm/vm-1/fs/readdir?path=%2Ftmp", "GET /vm/vm-1/fs/stat?path=%2Ftmp%2Fa", "GET /vm/vm-1/fs/stat?path=%2Fnope",
		"POST /vm/vm-1/fs/mkdir", "DELETE /vm/vm-1/fs/remove?path=%2Ftmp%2Fd&recursive=false",
	}
	if diff := cmp.Diff(want, rec.reqs); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
	if rec.bodies[3] != `{"path":"/tmp/d","recursive":true,"mode":"0755"}` {
		t.Errorf("mkdir body = %s", rec.bodies[3])
	}
}

func TestWatchFS(t *testing.T) {
	var accept, lastID, query string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		accept, lastID, query = r.Header.Get("Accept"), r.Header.Get("Last-Event-ID"), r.URL.RawQuery
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, ": heartbeat\n\n"+
			"id: 5\nevent: watch\ndata: {\"id\":5,\"type\":\"create\",\"path\":\"/tmp/a\",\"isDir\":false}\n\n"+
			"event: other\ndata: {}\n\n"+
			"id: 6\r\nevent: watch\r\ndata: {\"id\":6,\"type\":\"remove\",\"path\":\"/tmp/a\"}\r\n\r\n")
	}))
	defer srv.Close()
	ws, err := New(srv.URL, "").WatchFS(context.Background(), "vm-1", api.FSWatchRequest{
		Paths: []string{"/tmp"}, Events: []string{"create", "remove"}, Recursive: true, LastEventID: "4",
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	var got []api.FSWatchEvent
	for {
		ev, err := ws.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, *ev)
	}
	want := []api.FSWatchEvent{{ID: 5, Type: "create", Path: "/tmp/a"}, {ID: 6, Type: "remove", Path: "/tmp/a"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	if accept != "text/event-stream" || lastID != "4" || query != "events=create&events=remove&paths=%2Ftmp&recursive=true" {
		t.Errorf("request: Accept %q, Last-Event-ID %q, query %q", accept, lastID, query)
	}
	if ws.LastEventID != "6" {
		t.Errorf("LastEventID = %q, want 6", ws.LastEventID)
	}
}

// TestShell runs a fake shell endpoint that echoes data frames back, and
// reports the window size it was sent.
func TestShell(t *testing.T) {
	var query string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		query = r.URL.RawQuery
		conn, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer conn.CloseNow()
		ctx := r.Context()
		for {
			_, msg, err := conn.Read(ctx)
			if err != nil {
				return
			}
			typ, p, err := DecodeShellFrame(msg)
			if err != nil {
				return
			}
			switch typ {
			case api.ShellData:
				_ = conn.Write(ctx, websocket.MessageBinary, EncodeShellFrame(api.ShellData, append([]byte("echo:"), p...)))
			case api.ShellWindowSize:
				_ = conn.Write(ctx, websocket.MessageText, []byte("ignored"))
				_ = conn.Write(ctx, websocket.MessageBinary, EncodeShellFrame(api.ShellData, fmt.Appendf(nil, "size:%v", p)))
			case api.ShellShutdown:
				_ = conn.Write(ctx, websocket.MessageBinary, EncodeShellFrame(api.ShellSessionClose, nil))
				return
			}
		}
	}))
	defer srv.Close()
	ctx := context.Background()
	uid := uint32(1000)
	sh, err := New(srv.URL, "").Shell(ctx, "vm-1", ShellOptions{UID: &uid, Shell: "/bin/bash"})
	if err != nil {
		t.Fatal(err)
	}
	defer sh.Close()
	if query != "shell=%2Fbin%2Fbash&uid=1000" {
		t.Errorf("query = %q", query)
	}
	if err := sh.Resize(ctx, 80, 24); err != nil {
		t.Fatal(err)
	}
	if b, err := sh.Read(ctx); err != nil || string(b) != "size:[0 0 0 80 0 0 0 24]" {
		t.Errorf("after resize: %q, %v", b, err)
	}
	if err := sh.Heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	if err := sh.SendData(ctx, []byte("ls\r")); err != nil {
		t.Fatal(err)
	}
	if b, err := sh.Read(ctx); err != nil || string(b) != "echo:ls\r" {
		t.Errorf("echo: %q, %v", b, err)
	}
	if err := sh.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := sh.Read(ctx); !errors.Is(err, ErrSessionClosed) {
		t.Errorf("after shutdown: %v, want ErrSessionClosed", err)
	}
}

// TestForward tunnels several concurrent connections through a fake
// forward endpoint that echoes bytes, and checks the upgrade headers.
func TestForward(t *testing.T) {
	var mu sync.Mutex
	var upstreams []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		upstreams = append(upstreams, r.Header.Get(api.HeaderInletsUpstream)+" "+r.Header.Get(api.HeaderInletsMode)+" "+r.Header.Get("User-Agent"))
		mu.Unlock()
		conn, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		nc := websocket.NetConn(r.Context(), conn, websocket.MessageBinary)
		defer nc.Close()
		_, _ = io.Copy(nc, nc) // echo until the client closes
	}))
	defer srv.Close()

	ctx, cancel := context.WithCancel(context.Background())
	ln, err := ListenForward(ctx, ForwardSpec{Network: "tcp", Address: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- New(srv.URL, "").Forward(ctx, slog.New(slog.DiscardHandler), "vm-1", ln, "127.0.0.1:9000")
	}()
	var wg sync.WaitGroup
	for i := range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Close()
			msg := fmt.Sprintf("hello %d", i)
			if _, err := io.WriteString(conn, msg); err != nil {
				t.Error(err)
				return
			}
			buf := make([]byte, len(msg))
			if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != msg {
				t.Errorf("conn %d echoed %q, %v", i, buf, err)
			}
		}()
	}
	wg.Wait()
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Forward = %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(upstreams) != 5 || upstreams[0] != "127.0.0.1:9000 local slicer-forward/1.0" {
		t.Errorf("upgrades = %q", upstreams)
	}
}
