package client

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/openslicer/openslicer/api"
)

// framesServer answers every exec with the given NDJSON body.
func framesServer(t *testing.T, body string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestExecCopy(t *testing.T) {
	tests := []struct {
		name       string
		body       string
		wantOut    string
		wantErrOut string
		wantCode   int
		wantErr    func(error) bool
	}{
		{
			name: "base64 and non-zero exit",
			body: `{"type":"started","pid":7,"exit_code":0}` + "\n" +
				`{"type":"stdout","encoding":"base64","stdout":"` + b64("hello\n\x00\xff") + `","exit_code":0}` + "\n" +
				`{"type":"stderr","encoding":"base64","data":"` + b64("oops\n") + `","exit_code":0}` + "\n" +
				`{"type":"exit","exit_code":3}` + "\n",
			wantOut: "hello\n\x00\xff", wantErrOut: "oops\n", wantCode: 3,
		},
		{
			name: "text frames",
			body: `{"type":"started","exit_code":0}` + "\n" +
				`{"type":"stdout","stdout":"a\n","exit_code":0}` + "\n\n" +
				`{"type":"stdout","data":"b\n","exit_code":0}` + "\n" +
				`{"type":"exit","exit_code":0}` + "\n",
			wantOut: "a\nb\n",
		},
		{
			name:    "final line without newline",
			body:    `{"type":"stdout","stdout":"x","exit_code":0}` + "\n" + `{"type":"exit","exit_code":2}`,
			wantOut: "x", wantCode: 2,
		},
		{
			name:    "legacy untyped frames end at EOF",
			body:    `{"stdout":"out","stderr":"err","exit_code":0}` + "\n" + `{"stdout":"","exit_code":5}` + "\n",
			wantOut: "out", wantErrOut: "err", wantCode: 5,
		},
		{
			name:     "error frame",
			body:     `{"error":"exec: \"nope\": executable file not found in $PATH","exit_code":127}` + "\n",
			wantCode: 127,
			wantErr: func(err error) bool {
				var fe *FrameError
				return errors.As(err, &fe) && fe.ExitCode == 127 && strings.Contains(fe.Message, "nope")
			},
		},
		{
			name:    "stream cut before exit",
			body:    `{"type":"started","exit_code":0}` + "\n" + `{"type":"stdout","stdout":"partial","exit_code":0}` + "\n",
			wantOut: "partial",
			wantErr: func(err error) bool { return errors.Is(err, io.ErrUnexpectedEOF) },
		},
		{
			name:    "bad base64",
			body:    `{"type":"stdout","encoding":"base64","stdout":"!!!","exit_code":0}` + "\n",
			wantErr: func(err error) bool { return err != nil },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := framesServer(t, tt.body)
			s, err := New(srv.URL, "").Exec(context.Background(), "vm-1", &api.ExecRequest{Command: "true"}, nil)
			if err != nil {
				t.Fatalf("Exec(): %v", err)
			}
			defer s.Close()
			var out, errOut bytes.Buffer
			code, err := s.Copy(&out, &errOut)
			if tt.wantErr == nil && err != nil {
				t.Fatalf("Copy(): %v", err)
			}
			if tt.wantErr != nil && !tt.wantErr(err) {
				t.Fatalf("Copy() error = %v, not the wanted kind", err)
			}
			if out.String() != tt.wantOut || errOut.String() != tt.wantErrOut || code != tt.wantCode {
				t.Errorf("Copy() = stdout %q stderr %q code %d; want %q %q %d", out.String(), errOut.String(), code, tt.wantOut, tt.wantErrOut, tt.wantCode)
			}
		})
	}
}

func TestExecNextAfterFinal(t *testing.T) {
	srv := framesServer(t, `{"type":"exit","exit_code":0}`+"\n"+`{"type":"stdout","stdout":"late","exit_code":0}`+"\n")
	s, err := New(srv.URL, "").Exec(context.Background(), "vm-1", &api.ExecRequest{Command: "true"}, nil)
	if err != nil {
		t.Fatalf("Exec(): %v", err)
	}
	defer s.Close()
	f, err := s.Next()
	if err != nil || f.Type != api.FrameExit {
		t.Fatalf("Next() = %+v, %v; want the exit frame", f, err)
	}
	if f, err := s.Next(); !errors.Is(err, io.EOF) {
		t.Errorf("Next() after the exit frame = %+v, %v; want io.EOF", f, err)
	}
}

func TestExecRequestEncoding(t *testing.T) {
	var got struct {
		query      string
		ctype, ua  string
		bodyLength int64
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.query, got.ctype, got.bodyLength = r.URL.RawQuery, r.Header.Get("Content-Type"), r.ContentLength
		_, _ = io.WriteString(w, `{"type":"exit","exit_code":0}`+"\n")
	}))
	t.Cleanup(srv.Close)
	uid := uint32(0)
	req := &api.ExecRequest{Command: "echo", Args: []string{"a b"}, UID: &uid, Stdio: api.StdioBase64, Buffered: true}
	s, err := New(srv.URL, "").Exec(context.Background(), "vm-1", req, nil)
	if err != nil {
		t.Fatalf("Exec(): %v", err)
	}
	s.Close()
	if want := "args=a+b&cmd=echo&stdio=base64&uid=0"; got.query != want {
		t.Errorf("query = %q, want %q", got.query, want)
	}
	if got.ctype != "" {
		t.Errorf("Content-Type = %q, want none", got.ctype)
	}
	if !req.Buffered {
		t.Error("Exec() changed the caller's request")
	}
}

func TestExecNotFound(t *testing.T) {
	srv := httptest.NewServer(&recorder{status: 404, body: `{"error":"vm not found"}`})
	t.Cleanup(srv.Close)
	_, err := New(srv.URL, "").Exec(context.Background(), "nope", &api.ExecRequest{Command: "true"}, strings.NewReader("unused"))
	if !errors.Is(err, api.ErrNotFound) {
		t.Errorf("Exec() error = %v, want ErrNotFound", err)
	}
}

// echoServer streams each chunk of the request body back as a base64
// stdout frame while still reading the body, the way the daemon pipes stdin.
func echoServer(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("stdin") != "true" {
			http.Error(w, "stdin=true missing", http.StatusBadRequest)
			return
		}
		rc := http.NewResponseController(w)
		if err := rc.EnableFullDuplex(); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		enc := json.NewEncoder(w)
		emit := func(f api.ExecFrame) {
			_ = enc.Encode(f)
			_ = rc.Flush()
		}
		emit(api.ExecFrame{Type: api.FrameStarted, Pid: 1})
		buf := make([]byte, 4096)
		for {
			n, err := r.Body.Read(buf)
			if n > 0 {
				emit(api.ExecFrame{Type: api.FrameStdout, Encoding: api.StdioBase64, Stdout: base64.StdEncoding.EncodeToString(buf[:n])})
			}
			if err != nil {
				break
			}
		}
		emit(api.ExecFrame{Type: api.FrameExit, ExitCode: 0})
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestExecStdinFullDuplex(t *testing.T) {
	srv := echoServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // guard against a hang only
	defer cancel()

	pr, pw := io.Pipe()
	defer pw.Close()
	s, err := New(srv.URL, "").Exec(ctx, "vm-1", &api.ExecRequest{Command: "cat", Stdio: api.StdioBase64}, pr)
	if err != nil {
		t.Fatalf("Exec(): %v", err)
	}
	defer s.Close()

	// Each line written to stdin must come back before the next is
	// written: that only works when request and response stream together.
	var frames []api.ExecFrame
	for _, line := range []string{"one\n", "two\n"} {
		if _, err := io.WriteString(pw, line); err != nil {
			t.Fatalf("write stdin: %v", err)
		}
		for {
			f, err := s.Next()
			if err != nil {
				t.Fatalf("Next() waiting for echo of %q: %v", line, err)
			}
			frames = append(frames, *f)
			if f.Type == api.FrameStdout {
				got, _ := DecodeOutput(f.Encoding, f.Stdout)
				if string(got) != line {
					t.Fatalf("echo = %q, want %q", got, line)
				}
				break
			}
		}
	}
	pw.Close()
	var rest bytes.Buffer
	code, err := s.Copy(&rest, nil)
	if err != nil || code != 0 || rest.Len() != 0 {
		t.Errorf("Copy() after stdin EOF = %d, %v, output %q; want 0, nil, empty", code, err, rest.String())
	}
	if diff := cmp.Diff([]string{"started", "stdout", "stdout"}, frameTypes(frames)); diff != "" {
		t.Errorf("frame types mismatch (-want +got):\n%s", diff)
	}
}

func frameTypes(fs []api.ExecFrame) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.Type)
	}
	return out
}

func TestExecBuffered(t *testing.T) {
	var query string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		query = r.URL.RawQuery
		_, _ = io.WriteString(w, `{"stdout":"aGkK","encoding":"base64","exit_code":4}`)
	}))
	t.Cleanup(srv.Close)
	res, err := New(srv.URL, "").ExecBuffered(context.Background(), "vm-1", &api.ExecRequest{Command: "sh", Stdin: true, Stdio: api.StdioBase64})
	if err != nil {
		t.Fatalf("ExecBuffered(): %v", err)
	}
	if want := "buffered=true&cmd=sh&stdio=base64"; query != want {
		t.Errorf("query = %q, want %q", query, want)
	}
	out, err := DecodeOutput(res.Encoding, res.Stdout)
	if err != nil || string(out) != "hi\n" || res.ExitCode != 4 {
		t.Errorf("result = %q, %v, exit %d; want hi, nil, 4", out, err, res.ExitCode)
	}
}

func TestExecEndsWhileStdinOpen(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		_ = rc.EnableFullDuplex()
		_, _ = io.WriteString(w, `{"type":"started","exit_code":0}`+"\n")
		_ = rc.Flush()
		// Read one chunk of stdin, then exit without waiting for EOF, as a
		// command like `head -c 3` would.
		buf := make([]byte, 3)
		_, _ = io.ReadFull(r.Body, buf)
		_, _ = io.WriteString(w, `{"type":"stdout","stdout":"`+string(buf)+`","exit_code":0}`+"\n"+`{"type":"exit","exit_code":0}`+"\n")
	}))
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // guard against a hang only
	defer cancel()

	pr, pw := io.Pipe()
	defer pw.Close()
	s, err := New(srv.URL, "").Exec(ctx, "vm-1", &api.ExecRequest{Command: "head"}, pr)
	if err != nil {
		t.Fatalf("Exec(): %v", err)
	}
	if _, err := io.WriteString(pw, "abcdef"); err != nil {
		t.Fatalf("write stdin: %v", err)
	}
	var out bytes.Buffer
	code, err := s.Copy(&out, nil)
	if err != nil || code != 0 || out.String() != "abc" {
		t.Errorf("Copy() = %d, %v, %q; want 0, nil, abc", code, err, out.String())
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close(): %v", err)
	}
}
