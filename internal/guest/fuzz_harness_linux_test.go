package guest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/openslicer/openslicer/api"
)

// The fuzz targets of the agent's HTTP routes run the real handler in
// this process against a sandbox directory that stands in for the guest's
// file system. Nothing they do may reach the host running the tests:
//
//   - processes are never started (refuseStarter): exec, background exec,
//     shell and userdata get the error a program that cannot be executed
//     gives;
//   - every path a request names (path, paths, a mkdir body's path) is
//     rewritten into the sandbox when it would resolve outside it, for
//     any of the users the request could act as; relative paths, "~" and
//     ".." are kept as they are while they stay inside;
//   - a forward's valid upstream is replaced by a unix socket in the
//     sandbox that accepts and closes;
//   - answers are discarded past a few MiB, so a huge download costs
//     nothing.

// refuseStarter starts nothing: every command fails as one that is not
// executable would.
type refuseStarter struct{}

func (refuseStarter) start(cmd *exec.Cmd) (func() syscall.WaitStatus, error) {
	return nil, &fs.PathError{Op: "fork/exec", Path: cmd.Path, Err: fs.ErrPermission}
}

// fuzzAgent is an agent Server confined to a sandbox.
type fuzzAgent struct {
	srv     *Server
	handler http.Handler
	root    string // the sandbox: the guest's "/"
	outside string // next to the sandbox; must never change
	sock    string // the forward upstream
}

// newFuzzAgent makes a sandbox with root's and the uid-1000 user's homes
// in it, and a Server whose accounts and paths all point into it.
func newFuzzAgent(t *testing.T) *fuzzAgent {
	t.Helper()
	base := t.TempDir()
	a := &fuzzAgent{root: filepath.Join(base, "root"), outside: filepath.Join(base, "outside")}
	a.sock = filepath.Join(a.root, "upstream.sock")
	rootHome, userHome := filepath.Join(a.root, "root"), filepath.Join(a.root, "home", "user")
	for _, d := range []string{a.root, filepath.Join(a.root, "etc"), rootHome, userHome, filepath.Join(a.root, "tmp"), a.outside} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if os.Geteuid() == 0 {
		if err := os.Chown(userHome, 1000, 1000); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{
		filepath.Join(a.root, "etc", "passwd"): "root:x:0:0:root:" + rootHome + ":/bin/sh\nuser:x:1000:1000::" + userHome + ":/bin/sh\n",
		filepath.Join(a.root, "etc", "group"):  "root:x:0:\nuser:x:1000:\nwheel:x:10:user\n",
		filepath.Join(userHome, "notes.txt"):   "hello\n",
		filepath.Join(a.root, "console"):       "",
		filepath.Join(a.outside, "keep"):       "must not change\n",
	}
	for p, s := range files {
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ln, err := net.Listen("unix", a.sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	a.srv = &Server{
		log:     slog.New(slog.DiscardHandler),
		starter: refuseStarter{},
		etcDir:  filepath.Join(a.root, "etc"),
		paths: guestPaths{
			slicerDir:   filepath.Join(a.root, "etc", "slicer"),
			userdataLog: filepath.Join(a.root, "var", "log", "slicer-userdata.log"),
			console:     filepath.Join(a.root, "console"),
			rootHome:    rootHome,
			proc:        "/proc",
			statfsRoot:  a.root,
			secretsDir:  filepath.Join(a.root, "run", "slicer", "secrets"),
		},
	}
	t.Cleanup(a.srv.fb.runs.Wait)
	a.handler = a.srv.Handler()
	return a
}

// inside reports whether the clean absolute path p is the sandbox or in it.
func (a *fuzzAgent) inside(p string) bool {
	return p == a.root || strings.HasPrefix(p, a.root+"/")
}

// homes are the home directories a request could resolve relative paths
// against: the default user's, root's, and that of the uid it names (an
// unknown uid's home is "/").
func (a *fuzzAgent) homes(q url.Values) []string {
	out := []string{a.srv.user(nil, nil).Home, a.srv.user(new(uint32), nil).Home}
	if uid, err := parseID("uid", q.Get("uid")); err == nil && uid != nil {
		out = append(out, a.srv.user(uid, nil).Home)
	}
	return out
}

// confine returns raw unchanged when it resolves inside the sandbox for
// every home it could be relative to, else the path it resolves to from
// the first home that escapes, moved under the sandbox (keeping a
// trailing "/" or "/.", which cp-v1 reads).
func (a *fuzzAgent) confine(raw string, homes []string) string {
	if raw == "" {
		return raw
	}
	for _, home := range homes {
		abs := workDir(raw, home, func(string) bool { return true })
		if a.inside(abs) {
			continue
		}
		out := path.Join(a.root, abs)
		for _, suffix := range []string{"/.", "/"} {
			if strings.HasSuffix(raw, suffix) {
				out += suffix
				break
			}
		}
		return out
	}
	return raw
}

// confineQuery rewrites the path parameters of a query, and a forward's
// upstream.
func (a *fuzzAgent) confineQuery(q url.Values) {
	homes := a.homes(q)
	for _, k := range []string{"path", "paths"} {
		for i, v := range q[k] {
			q[k][i] = a.confine(v, homes)
		}
	}
	for i, v := range q["upstream"] {
		if _, _, err := parseUpstream(v); err == nil {
			q["upstream"][i] = "unix:" + a.sock
		}
	}
}

// confineBody rewrites the path of a JSON object body (a mkdir request),
// in every spelling encoding/json would take for it, for the homes of the
// request's query. A body that is not such an object is returned as it
// is.
func (a *fuzzAgent) confineBody(body []byte, q url.Values) []byte {
	homes := a.homes(q)
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		var req api.FSMkdirRequest
		if json.NewDecoder(bytes.NewReader(body)).Decode(&req) != nil {
			return body // no route can read a path from it
		}
		req.Path = a.confine(req.Path, homes)
		b, _ := json.Marshal(req)
		return b
	}
	changed := false
	for k, v := range m {
		if s, ok := v.(string); ok && strings.EqualFold(k, "path") {
			m[k], changed = a.confine(s, homes), true
		}
	}
	if !changed {
		return body
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(err) // what was decoded encodes
	}
	return b
}

// outsideDigest summarises everything next to the sandbox, to prove that
// nothing outside it changed.
func (a *fuzzAgent) outsideDigest(t *testing.T) string {
	t.Helper()
	return treeDigest(t, a.outside)
}

// treeDigest summarises a directory tree: names, types, modes, sizes and
// contents, and symlink targets, without following links.
func treeDigest(t *testing.T, dir string) string {
	t.Helper()
	h := sha256.New()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s %v %d\n", p, fi.Mode(), fi.Size())
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(h, "-> %s\n", target)
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			h.Write(b)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("read %s: %v", dir, err)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

// fuzzResponse records an answer's status and headers and discards its
// body past maxKept bytes; past maxBody a write fails, as it would once
// the caller hung up. It does what the agent's handlers ask of an HTTP/1
// connection, except hijacking.
type fuzzResponse struct {
	header  http.Header
	status  int // 0: nothing written yet
	body    bytes.Buffer
	written int64
}

const (
	maxKept = 64 << 10
	maxBody = 4 << 20
)

var errFuzzBodyLimit = errors.New("fuzz: answer body limit reached")

func newFuzzResponse() *fuzzResponse { return &fuzzResponse{header: http.Header{}} }

func (w *fuzzResponse) Header() http.Header { return w.header }

func (w *fuzzResponse) WriteHeader(code int) {
	if w.status == 0 || w.status >= 100 && w.status < 200 && w.status != http.StatusSwitchingProtocols {
		w.status = code
	}
}

func (w *fuzzResponse) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if w.written+int64(len(b)) > maxBody {
		return 0, errFuzzBodyLimit
	}
	w.written += int64(len(b))
	if keep := maxKept - w.body.Len(); keep > 0 {
		w.body.Write(b[:min(keep, len(b))])
	}
	return len(b), nil
}

func (w *fuzzResponse) FlushError() error {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return nil
}

func (w *fuzzResponse) EnableFullDuplex() error          { return nil }
func (w *fuzzResponse) SetReadDeadline(time.Time) error  { return nil }
func (w *fuzzResponse) SetWriteDeadline(time.Time) error { return nil }

// code is the status the caller saw: 200 when the handler wrote nothing.
func (w *fuzzResponse) code() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}

// text is the start of the answer's body.
func (w *fuzzResponse) text() string { return w.body.String() }

// bodyReader is a request body as net/http hands it to a handler: it ends
// after the declared Content-Length, and a body shorter than declared ends
// with io.ErrUnexpectedEOF.
type bodyReader struct {
	r        io.Reader
	declared int64 // -1: unknown (chunked)
	read     int64
}

func newBodyReader(body []byte, declared int64) *bodyReader {
	var r io.Reader = bytes.NewReader(body)
	if declared >= 0 {
		r = io.LimitReader(r, declared)
	}
	return &bodyReader{r: r, declared: declared}
}

func (b *bodyReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.read += int64(n)
	if errors.Is(err, io.EOF) && b.declared >= 0 && b.read < b.declared {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

func (b *bodyReader) Close() error { return nil }

// serve runs one request through the handler and returns the answer, or
// fails the test on a panic other than http.ErrAbortHandler (which
// net/http turns into a cut connection, the documented way to abort a
// streamed answer). aborted reports that panic.
func (a *fuzzAgent) serve(t *testing.T, r *http.Request) (w *fuzzResponse, aborted bool) {
	t.Helper()
	w = newFuzzResponse()
	func() {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					aborted = true
					return
				}
				t.Fatalf("%s %s panicked: %v\n%s", r.Method, r.URL, v, debug.Stack())
			}
		}()
		a.handler.ServeHTTP(w, r)
	}()
	return w, aborted
}

// fuzzUID is the query value that makes a request act as the test's own
// user, so that writes work with and without root.
func fuzzUID() string { return strconv.Itoa(os.Geteuid()) }

// fuzzGID is the group that goes with fuzzUID.
func fuzzGID() string { return strconv.Itoa(os.Getegid()) }

// fuzzContext bounds a request that waits (a watch, a follow), so that one
// input cannot stall the fuzzer.
func fuzzContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 250*time.Millisecond)
	t.Cleanup(cancel)
	return ctx
}
