package e2e

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/client"
)

// testActAsUser checks, in a real guest, that copies and file-system
// requests without a uid act as the default user (uid 1000) and get that
// user's permission errors as 403, and that uid=0 acts as root.
func testActAsUser(t *testing.T, d *daemon, vm string) {
	c, ctx := d.client, context.Background()
	root := u32(0)
	state := func(p string) string {
		out, _, _ := execIn(t, c, vm, &api.ExecRequest{Command: "sha256sum " + p + "; stat -c '%u %g %a' " + p, Shell: "/bin/sh", UID: root}, nil)
		return out
	}
	passwdBefore, shadowBefore := state("/etc/passwd"), state("/etc/shadow")

	cp := func(q url.Values, body string) *http.Response {
		return d.raw(t, http.MethodPost, "/vm/"+vm+"/cp", q, http.Header{"Content-Type": {"application/octet-stream"}}, []byte(body))
	}
	refused := []struct {
		name string
		resp func() *http.Response
	}{
		{"cp to /etc/passwd", func() *http.Response { return cp(url.Values{"path": {"/etc/passwd"}}, "pwned\n") }},
		{"cp out of the home with ..", func() *http.Response { return cp(url.Values{"path": {"~/../../etc/evil"}}, "x") }},
		{"fs/remove of /etc/shadow", func() *http.Response {
			return d.raw(t, http.MethodDelete, "/vm/"+vm+"/fs/remove", url.Values{"path": {"/etc/shadow"}, "recursive": {"false"}}, http.Header{}, nil)
		}},
		{"download of /etc/shadow", func() *http.Response {
			return d.raw(t, http.MethodGet, "/vm/"+vm+"/cp", url.Values{"path": {"/etc/shadow"}}, http.Header{}, nil)
		}},
		{"readdir of /root", func() *http.Response {
			return d.raw(t, http.MethodGet, "/vm/"+vm+"/fs/readdir", url.Values{"path": {"/root"}}, http.Header{}, nil)
		}},
		{"mkdir in /etc", func() *http.Response {
			return d.raw(t, http.MethodPost, "/vm/"+vm+"/fs/mkdir", url.Values{}, http.Header{"Content-Type": {"application/json"}}, []byte(`{"path":"/etc/evil.d"}`))
		}},
	}
	for _, r := range refused {
		resp := r.resp()
		if body := readAll(resp); resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "permission denied") {
			t.Errorf("%s without uid = %d %s, want 403 permission denied", r.name, resp.StatusCode, body)
		}
	}
	if got := state("/etc/passwd"); got != passwdBefore {
		t.Errorf("/etc/passwd after a refused copy: %q, was %q", got, passwdBefore)
	}
	if got := state("/etc/shadow"); got != shadowBefore {
		t.Errorf("/etc/shadow after a refused remove: %q, was %q", got, shadowBefore)
	}
	for _, p := range []string{"/etc/evil", "/etc/evil.d"} {
		if _, err := c.Stat(ctx, vm, p); !errors.Is(err, api.ErrNotFound) {
			t.Errorf("stat %s after refused requests: %v, want not found", p, err)
		}
	}
	// The client sees the class.
	if _, err := c.ReadDir(ctx, vm, "/root"); !errors.Is(err, api.ErrForbidden) {
		t.Errorf("ReadDir /root as the default user: %v, want api.ErrForbidden", err)
	}

	// uid=0 acts as root, on a scratch file in /etc.
	if err := c.WriteFile(ctx, vm, "/etc/scratch", []byte("s"), client.CopyOptions{UID: root, GID: root}); err != nil {
		t.Fatalf("WriteFile /etc/scratch as root: %v", err)
	}
	resp := d.raw(t, http.MethodDelete, "/vm/"+vm+"/fs/remove", url.Values{"path": {"/etc/scratch"}, "recursive": {"false"}, "uid": {"0"}}, http.Header{}, nil)
	if body := readAll(resp); resp.StatusCode != http.StatusOK {
		t.Errorf("fs/remove /etc/scratch as uid 0 = %d %s, want 200", resp.StatusCode, body)
	}
	if _, err := c.Stat(ctx, vm, "/etc/scratch"); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("/etc/scratch after its remove as root: %v, want not found", err)
	}

	// The default user's copy into its home: new parents and file are its.
	if err := c.WriteFile(ctx, vm, "~/deep/er/mine.txt", []byte("mine"), client.CopyOptions{}); err != nil {
		t.Fatalf("WriteFile ~/deep/er/mine.txt: %v", err)
	}
	out, _, _ := execIn(t, c, vm, &api.ExecRequest{Command: "stat -c '%u %g' ~/deep ~/deep/er ~/deep/er/mine.txt", Shell: "/bin/sh"}, nil)
	if out != "1000 1000\n1000 1000\n1000 1000\n" {
		t.Errorf("owners in the home = %q, want the default user 1000 for all", out)
	}
}

// testNULPaths checks that a NUL byte in a path is a 400 naming the
// parameter, through the daemon, for copies, fs routes and watches.
func testNULPaths(t *testing.T, d *daemon, vm string) {
	bad := "/tmp/a\x00b"
	tests := []struct {
		name, method, route string
		q                   url.Values
		param               string
	}{
		{"cp upload", http.MethodPost, "cp", url.Values{"path": {bad}}, "path"},
		{"cp download", http.MethodGet, "cp", url.Values{"path": {bad}}, "path"},
		{"fs stat", http.MethodGet, "fs/stat", url.Values{"path": {bad}}, "path"},
		{"fs readdir", http.MethodGet, "fs/readdir", url.Values{"path": {bad}}, "path"},
		{"fs remove", http.MethodDelete, "fs/remove", url.Values{"path": {bad}, "recursive": {"false"}}, "path"},
		{"fs watch", http.MethodGet, "fs/watch", url.Values{"paths": {bad}}, "paths"},
	}
	for _, tt := range tests {
		var body []byte
		if tt.method == http.MethodPost {
			body = []byte("x")
		}
		resp := d.raw(t, tt.method, "/vm/"+vm+"/"+tt.route, tt.q, http.Header{}, body)
		if msg := readAll(resp); resp.StatusCode != http.StatusBadRequest || !strings.Contains(msg, tt.param) || !strings.Contains(msg, "NUL") {
			t.Errorf("%s with a NUL in %s = %d %s, want 400 naming it", tt.name, tt.param, resp.StatusCode, msg)
		}
	}
}

// testEarly507 declares an upload far larger than the guest's disk, sends
// the first 64 KiB and then waits: the 507 must come while the client has
// sent only those bytes, with the connection closed after it.
func testEarly507(t *testing.T, d *daemon, vm string) {
	const sent, declared = 64 << 10, int64(1) << 50
	conn, err := net.Dial("unix", d.socket)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(2 * time.Minute)) // a hang guard
	q := url.Values{"path": {"/tmp/huge.bin"}}
	head := fmt.Sprintf("POST /vm/%s/cp?%s HTTP/1.1\r\nHost: slicer\r\nAuthorization: Bearer %s\r\n"+
		"Content-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n", vm, q.Encode(), d.token, declared)
	if _, err := io.WriteString(conn, head+strings.Repeat("z", sent)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no answer after %d of %d bytes sent, with the client waiting: %v", sent, declared, err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusInsufficientStorage || !resp.Close {
		t.Errorf("answer = %d (Connection: %q) %s, want 507 and close", resp.StatusCode, resp.Header.Get("Connection"), body)
	}
	if n, err := br.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("after the 507 the connection gave %d bytes, %v; want it closed", n, err)
	}
	if _, err := d.client.Stat(context.Background(), vm, "/tmp/huge.bin"); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("/tmp/huge.bin after a refused upload: %v, want not found", err)
	}
}

// testRejectedTar sends tars that start well and end with an escape, into
// an existing directory (merged into) and to a missing one: the guest's
// tree must be as it was, byte for byte.
func testRejectedTar(t *testing.T, d *daemon, vm string) {
	c := d.client
	setup := "mkdir -p /tmp/merge/sub && echo old > /tmp/merge/keep && echo a > /tmp/merge/sub/a && touch -d '2020-01-02 03:04:05' /tmp/merge/keep /tmp/merge/sub /tmp/merge"
	if _, errOut, code := execIn(t, c, vm, &api.ExecRequest{Command: setup, Shell: "/bin/sh"}, nil); code != 0 {
		t.Fatalf("setup: exit %d %s", code, errOut)
	}
	snapshot := func() string {
		cmd := "find /tmp/merge | sort | while read p; do stat -c '%n %A %u %g %s %Y' \"$p\"; done; find /tmp/merge -type f | sort | xargs sha256sum; ls /tmp/x 2>&1"
		out, _, _ := execIn(t, c, vm, &api.ExecRequest{Command: cmd, Shell: "/bin/sh", UID: u32(0)}, nil)
		return out
	}
	before := snapshot()
	hostile := orderedTar(t, []tarItem{{"ok1", "fine"}, {"keep", "new"}, {"sub/b", "b"}, {"../x", "x"}})
	for _, target := range []url.Values{
		{"path": {"/tmp/merge"}, "copy_contents": {"true"}},
		{"path": {"/tmp/merge/new/deeper"}}, // missing parents
		{"path": {"/tmp/merge/other"}},
	} {
		q := url.Values{"mode": {api.CopyModeTar}, "copy_semantics": {"cp-v1"}, "source_type": {"directory"}, "source_name": {"src"}}
		for k, v := range target {
			q[k] = v
		}
		resp := d.raw(t, http.MethodPost, "/vm/"+vm+"/cp", q, http.Header{"Content-Type": {"application/x-tar"}, api.HeaderUnpackedSize: {strconv.Itoa(1 << 20)}}, hostile)
		if body := readAll(resp); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("tar ending in ../x to %s = %d %s, want 400", target.Get("path"), resp.StatusCode, body)
		}
	}
	if after := snapshot(); after != before {
		t.Errorf("refused tar uploads changed /tmp/merge:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// tarItem is one regular file of orderedTar.
type tarItem struct{ name, body string }

// orderedTar is a tar of regular files in the order given.
func orderedTar(t *testing.T, items []tarItem) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, it := range items {
		if err := tw.WriteHeader(&tar.Header{Name: it.name, Mode: 0o644, Size: int64(len(it.body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(it.body))
	}
	tw.Close()
	return b.Bytes()
}
