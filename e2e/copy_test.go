package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/client"
	"github.com/openslicer/openslicer/internal/testenv"
)

// TestCopy copies files and trees both ways through the public client and
// the CLI, checking bytes by SHA-256, owners, modes and mtimes, and that
// the daemon refuses an upload that would not fit or would escape its
// destination.
func TestCopy(t *testing.T) {
	testenv.RequireE2E(t)
	t.Parallel()
	d := startDaemon(t, "cp")
	c, ctx := d.client, context.Background()
	vm := createReady(t, c, "cp", api.CreateNodeRequest{}).Hostname
	local := t.TempDir()
	root := u32(0)

	t.Run("binary round trip", func(t *testing.T) {
		src := filepath.Join(local, "blob.bin")
		want := writeRandom(t, src, 3<<20+17)
		if err := c.CpToVM(ctx, vm, src, "/tmp/up/", client.CopyOptions{}); err == nil {
			t.Errorf("upload to a missing directory with a trailing slash succeeded")
		}
		if err := c.CpToVM(ctx, vm, src, "/tmp/up/blob.bin", client.CopyOptions{}); err != nil {
			t.Fatalf("CpToVM: %v", err)
		}
		out, _, _ := execIn(t, c, vm, &api.ExecRequest{Command: "sha256sum /tmp/up/blob.bin; stat -c '%u %g %a' /tmp/up/blob.bin /tmp/up", Shell: "/bin/sh"}, nil)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 3 || !strings.HasPrefix(lines[0], want+" ") {
			t.Fatalf("in the guest: %q, want sha256 %s first", out, want)
		}
		if !strings.HasPrefix(lines[1], "1000 1000 ") || !strings.HasPrefix(lines[2], "1000 1000 ") {
			t.Errorf("owner of the file and the created parent = %q, want the default user 1000", lines[1:])
		}
		back := filepath.Join(local, "back.bin")
		if err := c.CpFromVM(ctx, vm, "/tmp/up/blob.bin", back, client.CopyOptions{}); err != nil {
			t.Fatalf("CpFromVM: %v", err)
		}
		if got := sha256File(t, back); got != want {
			t.Errorf("downloaded sha256 %s, want %s", got, want)
		}
	})

	t.Run("owner, permissions and home", func(t *testing.T) {
		if err := c.WriteFile(ctx, vm, "~/note.txt", []byte("hello\n"), client.CopyOptions{Permissions: "600"}); err != nil {
			t.Fatalf("WriteFile ~/note.txt: %v", err)
		}
		if err := c.WriteFile(ctx, vm, "/root/owned", []byte("r"), client.CopyOptions{UID: root, GID: root}); err != nil {
			t.Fatalf("WriteFile as root: %v", err)
		}
		out, _, _ := execIn(t, c, vm, &api.ExecRequest{Command: "cat ~/note.txt; stat -c '%u %a' ~/note.txt", Shell: "/bin/sh"}, nil)
		if out != "hello\n1000 600\n" {
			t.Errorf("as the default user: %q, want the note in its home, owned by 1000, mode 600", out)
		}
		out, _, _ = execIn(t, c, vm, &api.ExecRequest{Command: "stat -c '%u %g' /root/owned", Shell: "/bin/sh", UID: root}, nil)
		if out != "0 0\n" {
			t.Errorf("uid=0 upload owner = %q, want 0 0", out)
		}
		got, err := c.ReadFile(ctx, vm, "/nonexistent/file")
		if !errors.Is(err, os.ErrNotExist) {
			t.Errorf("ReadFile of a missing path = %q, %v; want os.ErrNotExist", got, err)
		}
	})

	t.Run("tree with modes and mtimes", func(t *testing.T) {
		src := filepath.Join(local, "project")
		makeTree(t, src)
		if err := c.CpToVM(ctx, vm, src, "/tmp/tree", client.CopyOptions{Recursive: true, Exclude: []string{"*.log"}}); err != nil {
			t.Fatalf("CpToVM tree: %v", err)
		}
		out, _, _ := execIn(t, c, vm, &api.ExecRequest{Command: "ls /tmp/tree /tmp/tree/sub; test -e /tmp/tree/debug.log && echo LOG", Shell: "/bin/sh"}, nil)
		if strings.Contains(out, "LOG") || !strings.Contains(out, "run.sh") {
			t.Errorf("guest tree listing %q: want run.sh and no excluded debug.log", out)
		}
		// Into an existing directory the tree lands under its own name.
		if err := c.CpToVM(ctx, vm, src, "/tmp/tree", client.CopyOptions{Recursive: true}); err != nil {
			t.Fatalf("CpToVM into an existing directory: %v", err)
		}
		if _, err := c.Stat(ctx, vm, "/tmp/tree/project/debug.log"); err != nil {
			t.Errorf("second copy into /tmp/tree: want /tmp/tree/project/debug.log: %v", err)
		}
		back := filepath.Join(local, "back")
		if err := c.CpFromVM(ctx, vm, "/tmp/tree", back, client.CopyOptions{Recursive: true, Exclude: []string{"project"}}); err != nil {
			t.Fatalf("CpFromVM tree: %v", err)
		}
		want, got := treeOf(t, src, "debug.log"), treeOf(t, back, "")
		if diff := diffTrees(want, got); diff != "" {
			t.Errorf("tree after a round trip differs:\n%s", diff)
		}
	})

	t.Run("refused uploads leave nothing", func(t *testing.T) {
		resp := d.raw(t, http.MethodPost, "/vm/"+vm+"/cp", url.Values{"path": {"/tmp/huge"}, "mode": {api.CopyModeTar}, "copy_semantics": {"cp-v1"}, "source_name": {"huge"}, "source_type": {"directory"}},
			http.Header{"Content-Type": {"application/x-tar"}, api.HeaderUnpackedSize: {strconv.FormatInt(1<<50, 10)}}, tarOf(t, map[string]string{"a": "x"}))
		if resp.StatusCode != http.StatusInsufficientStorage {
			t.Errorf("upload declaring 1 PiB = %d %s, want 507", resp.StatusCode, readAll(resp))
		}
		resp = d.raw(t, http.MethodPost, "/vm/"+vm+"/cp", url.Values{"path": {"/tmp/evil"}, "mode": {api.CopyModeTar}, "copy_semantics": {"cp-v1"}, "source_name": {"evil"}, "source_type": {"directory"}},
			http.Header{"Content-Type": {"application/x-tar"}, api.HeaderUnpackedSize: {"2"}}, tarOf(t, map[string]string{"../../etc/evil": "x"}))
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("tar entry ../../etc/evil = %d %s, want 400", resp.StatusCode, readAll(resp))
		}
		for _, p := range []string{"/tmp/huge", "/etc/evil", "/tmp/etc/evil"} {
			if _, err := c.Stat(ctx, vm, p); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("after a refused upload %s: %v, want it absent", p, err)
			}
		}
	})

	t.Run("chunked upload helper", func(t *testing.T) {
		chunkedUpload(t, c, vm)
	})

	t.Run("acts as the default user", func(t *testing.T) { testActAsUser(t, d, vm) })
	t.Run("NUL in a path is 400", func(t *testing.T) { testNULPaths(t, d, vm) })
	t.Run("507 while the client is still sending", func(t *testing.T) { testEarly507(t, d, vm) })
	t.Run("a rejected tar leaves nothing", func(t *testing.T) { testRejectedTar(t, d, vm) })

	t.Run("cli", func(t *testing.T) {
		src := filepath.Join(local, "cli.bin")
		want := writeRandom(t, src, 200<<10)
		if out, code := d.cli(t, "", "vm", "cp", src, vm+":/tmp/cli.bin"); code != 0 {
			t.Fatalf("vm cp up: %q exit %d", out, code)
		}
		back := filepath.Join(local, "cli-back.bin")
		if out, code := d.cli(t, "", "vm", "cp", vm+":/tmp/cli.bin", back); code != 0 {
			t.Fatalf("vm cp down: %q exit %d", out, code)
		}
		if got := sha256File(t, back); got != want {
			t.Errorf("vm cp round trip sha256 %s, want %s", got, want)
		}
	})

	if _, err := c.DeleteNode(ctx, "cp", vm); err != nil {
		t.Fatal(err)
	}
	d.assertNothingLeft(t)
}

// chunkedUpload does what Slicer's SDK does for CpToVMChunked: check the
// guest helper, upload chunks and a manifest with plain binary copies, and
// have the helper assemble them.
func chunkedUpload(t *testing.T, c *client.Client, vm string) {
	ctx := context.Background()
	root := u32(0)
	res, err := c.ExecBuffered(ctx, vm, &api.ExecRequest{Command: "/usr/local/bin/slicer-agent", Args: []string{"upload", "check"}, UID: root, GID: root, Stdio: api.StdioText})
	if err != nil || res.ExitCode != 0 || !strings.Contains(res.Stdout, "chunked-copy-v2") {
		t.Fatalf("upload check = %+v, %v; want chunked-copy-v2", res, err)
	}
	data := make([]byte, 5<<20+3)
	rand.Read(data)
	session := "/tmp/chunked/.slicer-upload-" + hex.EncodeToString(data[:16])
	type chunk struct {
		Index  int    `json:"index"`
		Size   int64  `json:"size"`
		SHA256 string `json:"sha256"`
	}
	var chunks []chunk
	for i, off := 0, 0; off < len(data); i, off = i+1, off+2<<20 {
		part := data[off:min(off+2<<20, len(data))]
		sum := sha256.Sum256(part)
		chunks = append(chunks, chunk{i, int64(len(part)), hex.EncodeToString(sum[:])})
		// As the user the copy is for: finalise writes the result as that user.
		if err := c.WriteFile(ctx, vm, fmt.Sprintf("%s/chunks/%06d.chunk", session, i), part, client.CopyOptions{Permissions: "0600"}); err != nil {
			t.Fatalf("chunk %d: %v", i, err)
		}
	}
	manifest, _ := json.Marshal(map[string]any{
		"version": 2, "mode": "binary", "destination": "/tmp/chunked/big.bin", "uid": 1000, "gid": 1000,
		"permissions": "0640", "size": len(data), "copy_semantics": "cp-v1", "source_name": "big.bin",
		"source_type": "file", "chunks": chunks,
	})
	if err := c.WriteFile(ctx, vm, session+"/manifest.json", manifest, client.CopyOptions{Permissions: "0600"}); err != nil {
		t.Fatal(err)
	}
	res, err = c.ExecBuffered(ctx, vm, &api.ExecRequest{Command: "/usr/local/bin/slicer-agent", Args: []string{"upload", "finalise", "--manifest", session + "/manifest.json", "--uid", "1000", "--gid", "1000"}, UID: root, GID: root, Stdio: api.StdioText})
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("upload finalise = %+v, %v", res, err)
	}
	sum := sha256.Sum256(data)
	out, _, _ := execIn(t, c, vm, &api.ExecRequest{Command: "sha256sum /tmp/chunked/big.bin; stat -c '%u %a' /tmp/chunked/big.bin; ls -a /tmp/chunked", Shell: "/bin/sh", UID: root}, nil)
	want := hex.EncodeToString(sum[:]) + "  /tmp/chunked/big.bin\n1000 640\n.\n..\nbig.bin\n"
	if out != want {
		t.Errorf("after finalise: %q, want %q (the session directory removed)", out, want)
	}
}

// cli runs the slicer CLI against d and returns stdout and the exit code.
func (d *daemon) cli(t *testing.T, stdin string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "slicer"), args...)
	cmd.Env = append(cmd.Environ(), "SLICER_URL="+d.socket, "SLICER_TOKEN="+d.token)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("slicer %v: %v", args, err)
	}
	if errOut.Len() > 0 {
		t.Logf("slicer %v stderr: %s", args, errOut.String())
	}
	return out.String(), cmd.ProcessState.ExitCode()
}

// raw sends one request to d's API as it is, for what the client would not
// send; the body is read and closed at cleanup.
func (d *daemon) raw(t *testing.T, method, path string, q url.Values, hdr http.Header, body []byte) *http.Response {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", d.socket)
	}}}
	req, err := http.NewRequest(method, "http://slicer"+path+"?"+q.Encode(), bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = hdr
	req.Header.Set("Authorization", "Bearer "+d.token)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func readAll(resp *http.Response) string {
	b, _ := io.ReadAll(resp.Body)
	return strings.TrimSpace(string(b))
}

// tarOf returns a tar of regular files, names taken as given.
func tarOf(t *testing.T, files map[string]string) []byte {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for name, body := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(body))
	}
	tw.Close()
	return b.Bytes()
}

// writeRandom writes n random bytes to p and returns their SHA-256.
func writeRandom(t *testing.T, p string, n int) string {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func sha256File(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// makeTree makes a small project: files with different modes, an
// executable, an empty directory, a nested directory, and a log file to
// exclude; every mtime set in the past.
func makeTree(t *testing.T, dir string) {
	t.Helper()
	files := []struct {
		name string
		mode fs.FileMode
		body string
	}{
		{"README.md", 0o644, "# project\n"},
		{"run.sh", 0o755, "#!/bin/sh\necho run\n"},
		{"secret.key", 0o600, "key\n"},
		{"sub/deeper/data.txt", 0o640, strings.Repeat("data ", 5000)},
		{"debug.log", 0o644, "noise\n"},
	}
	for _, f := range files {
		p := filepath.Join(dir, f.name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(f.body), f.mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, f.mode)
	}
	if err := os.Mkdir(filepath.Join(dir, "empty"), 0o750); err != nil {
		t.Fatal(err)
	}
	when := time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)
	// Deepest first, so a parent's mtime is set after its children's.
	var paths []string
	filepath.WalkDir(dir, func(p string, _ fs.DirEntry, _ error) error { paths = append(paths, p); return nil })
	for i := len(paths) - 1; i >= 0; i-- {
		when = when.Add(time.Hour)
		if err := os.Chtimes(paths[i], when, when); err != nil {
			t.Fatal(err)
		}
	}
}

// treeOf describes every entry under dir but skip: type, mode, mtime to
// the second, and content digest.
func treeOf(t *testing.T, dir, skip string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == skip {
			return nil
		}
		fi, err := e.Info()
		if err != nil {
			return err
		}
		desc := fmt.Sprintf("%v %s", fi.Mode(), fi.ModTime().UTC().Truncate(time.Second).Format(time.RFC3339))
		if fi.Mode().IsRegular() {
			desc += " " + sha256File(t, p)[:12]
		}
		out[rel] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func diffTrees(want, got map[string]string) string {
	var b strings.Builder
	for k, w := range want {
		if g, ok := got[k]; !ok {
			fmt.Fprintf(&b, "missing %s (%s)\n", k, w)
		} else if g != w {
			fmt.Fprintf(&b, "%s: got %s, want %s\n", k, g, w)
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			fmt.Fprintf(&b, "extra %s (%s)\n", k, g)
		}
	}
	return b.String()
}
