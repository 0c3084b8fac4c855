package image

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/imageref"
)

// tent is one entry of a test layer.
type tent struct {
	name, body, link string
	typ              byte
	mode             int64
	uid, gid         int
	major, minor     int64
}

func tdir(n string) tent        { return tent{name: n, typ: tar.TypeDir, mode: 0o755} }
func tfile(n, body string) tent { return tent{name: n, body: body, typ: tar.TypeReg, mode: 0o644} }
func towned(n, body string, uid int) tent {
	return tent{name: n, body: body, typ: tar.TypeReg, mode: 0o640, uid: uid, gid: uid}
}
func tlink(n, target string) tent {
	return tent{name: n, link: target, typ: tar.TypeSymlink, mode: 0o777}
}
func tchar(n string, maj, min int64) tent {
	return tent{name: n, typ: tar.TypeChar, mode: 0o666, major: maj, minor: min}
}
func layerTar(t testing.TB, es ...tent) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range es {
		h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: e.mode, Uid: e.uid, Gid: e.gid,
			ModTime: time.Unix(1700000000, 0), Devmajor: e.major, Devminor: e.minor}
		if e.typ == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// testImage is an image of the given layers for this host's platform, with
// an exec config.
func testImage(t testing.TB, layers ...[]byte) v1.Image {
	t.Helper()
	var ls []v1.Layer
	for _, data := range layers {
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(data)), nil
		})
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
	}
	img, err := mutate.AppendLayers(empty.Image, ls...)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Config.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8"}
	cf.Config.WorkingDir = "/app"
	cf.Config.User = "1000"
	cf.Config.Cmd = []string{"python3"}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// twoLayers is a base layer and one that deletes /etc/gone and hides /opt.
func twoLayers(t testing.TB) v1.Image {
	return testImage(t,
		layerTar(t, tdir("etc/"), tfile("etc/keep", "kept\n"), tfile("etc/gone", "deleted\n"),
			tdir("opt/"), tfile("opt/old", "old\n"), tdir("home/"), tdir("home/app/"),
			towned("home/app/secret", "s\n", 1000)),
		layerTar(t, tfile("etc/.wh.gone", ""), tfile("opt/.wh..wh..opq", ""), tfile("opt/new", "new\n"),
			tdir("app/")),
	)
}

func requireE2fs(t testing.TB) {
	t.Helper()
	for _, tool := range []string{"mkfs.ext4", "debugfs"} {
		if _, err := lookTool(tool, "e2fsprogs"); err != nil {
			t.Skipf("needs %s: %v", tool, err)
		}
	}
}

// debugfsRun runs one read-only debugfs request against an ext4 file.
func debugfsRun(t testing.TB, img, req string) string {
	t.Helper()
	dbg, _ := lookTool("debugfs", "e2fsprogs")
	out, err := exec.Command(dbg, "-R", req, img).Output()
	if err != nil {
		t.Fatalf("debugfs -R %q: %v", req, err)
	}
	return string(out)
}

// lsNames lists the names in a directory of the image.
func lsNames(t testing.TB, img, dir string) []string {
	out := debugfsRun(t, img, "ls -p "+dir)
	var names []string
	for _, l := range strings.Split(out, "\n") {
		f := strings.Split(l, "/")
		if len(f) >= 6 && f[5] != "." && f[5] != ".." {
			names = append(names, f[5])
		}
	}
	sort.Strings(names)
	return names
}

// statField returns "Type", "Mode", "User", ... from debugfs stat output.
func stat(t testing.TB, img, path string) string {
	return debugfsRun(t, img, "stat "+path)
}

func newStore(t testing.TB) *Store {
	return &Store{Dir: filepath.Join(t.TempDir(), "oci"), Keychain: authn.NewMultiKeychain()}
}

func checkTwoLayerBase(t *testing.T, img *OCIImage) {
	t.Helper()
	if got := lsNames(t, img.RootFS, "/etc"); strings.Join(got, ",") != "group,keep,passwd,slicer" {
		t.Errorf("/etc holds %v, want keep (gone was whited out) and the guest layer's files", got)
	}
	// The guest layer: the image config for the agent, and the default
	// user the image lacked.
	if got, want := debugfsRun(t, img.RootFS, "cat /etc/slicer/image.json"),
		`"working_dir": "/app"`; !strings.Contains(got, want) || !strings.Contains(got, `"LANG=C.UTF-8"`) {
		t.Errorf("/etc/slicer/image.json = %q, want the image's exec defaults", got)
	}
	if got := debugfsRun(t, img.RootFS, "cat /etc/passwd"); !strings.Contains(got, "ubuntu:x:1000:1000:ubuntu:/home/ubuntu:/bin/sh\n") {
		t.Errorf("/etc/passwd = %q, want the default user", got)
	}
	if s := stat(t, img.RootFS, "/home/ubuntu"); !strings.Contains(s, "User:  1000   Group:  1000") {
		t.Errorf("/home/ubuntu owner wrong:\n%s", s)
	}
	if got := lsNames(t, img.RootFS, "/opt"); strings.Join(got, ",") != "new" {
		t.Errorf("/opt holds %v, want only new (opaque)", got)
	}
	if got := debugfsRun(t, img.RootFS, "cat /etc/keep"); got != "kept\n" {
		t.Errorf("/etc/keep = %q", got)
	}
	if s := stat(t, img.RootFS, "/home/app/secret"); !strings.Contains(s, "User:  1000   Group:  1000") ||
		!strings.Contains(s, "Mode:  0640") {
		t.Errorf("/home/app/secret owner or mode wrong:\n%s", s)
	}
	if img.Config.WorkingDir != "/app" || img.Config.User != "1000" || len(img.Config.Env) != 2 {
		t.Errorf("config %+v: want the image's exec defaults", img.Config)
	}
	st, err := os.Stat(img.RootFS)
	if err != nil || st.Mode().Perm() != 0o444 {
		t.Errorf("base %v %v: want read-only 0444", st, err)
	}
}

// authRegistry serves an in-process registry on loopback that wants basic
// auth user:pass, and points DOCKER_CONFIG at a config holding it.
func authRegistry(t testing.TB) (host string) {
	t.Helper()
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "user" || p != "pass" {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	host = strings.TrimPrefix(srv.URL, "http://")
	cfgDir := t.TempDir()
	cfg := fmt.Sprintf(`{"auths":{%q:{"auth":"dXNlcjpwYXNz"}}}`, host) // user:pass
	if err := os.WriteFile(filepath.Join(cfgDir, "config.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DOCKER_CONFIG", cfgDir)
	return host
}

func TestPullFromRegistryWithAuth(t *testing.T) {
	requireE2fs(t)
	host := authRegistry(t)
	img := twoLayers(t)
	ref, err := name.ParseReference(host + "/team/app:v1")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, remote.WithAuth(&authn.Basic{Username: "user", Password: "pass"})); err != nil {
		t.Fatal(err)
	}
	s := &Store{Dir: filepath.Join(t.TempDir(), "oci")} // default keychain: DOCKER_CONFIG
	var steps []string
	s.Progress = func(p Progress) { steps = append(steps, p.Step) }
	src, err := imageref.Parse(host+"/team/app:v1", false)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Pull(context.Background(), src.String(), src)
	if err != nil {
		t.Fatal(err)
	}
	checkTwoLayerBase(t, got)
	if !strings.Contains(strings.Join(steps, " "), "download") || steps[len(steps)-1] != "done" {
		t.Errorf("progress steps %v: want downloads and done", steps)
	}
	want, _ := img.ConfigName()
	if got.ID != want.String() {
		t.Errorf("ID %s, want the config digest %s", got.ID, want)
	}

	// Pulling again reuses the built image; a wrong password fails.
	again, err := s.Pull(context.Background(), src.String(), src)
	if err != nil || again.Dir != got.Dir {
		t.Fatalf("second pull: %v, %v", again, err)
	}
	if err := os.WriteFile(filepath.Join(os.Getenv("DOCKER_CONFIG"), "config.json"), []byte(`{"auths":{}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	s2 := &Store{Dir: filepath.Join(t.TempDir(), "oci")}
	if _, err := s2.Pull(context.Background(), src.String(), src); err == nil || !strings.Contains(err.Error(), "401") && !strings.Contains(strings.ToLower(err.Error()), "unauthorized") {
		t.Fatalf("pull without credentials: %v, want unauthorized", err)
	}
}

func TestPullFromOCILayoutAndArchives(t *testing.T) {
	requireE2fs(t)
	img := twoLayers(t)
	dir := t.TempDir()
	lp, err := layout.Write(filepath.Join(dir, "layout"), empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(img, layout.WithAnnotations(map[string]string{refNameAnnotation: "v1"})); err != nil {
		t.Fatal(err)
	}
	save := filepath.Join(dir, "save.tar")
	tag, _ := name.NewTag("example/app:v1")
	if err := tarball.WriteToFile(save, tag, img); err != nil {
		t.Fatal(err)
	}
	ociTar := filepath.Join(dir, "oci.tar")
	if out, err := exec.Command("tar", "-C", filepath.Join(dir, "layout"), "-cf", ociTar, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v %s", err, out)
	}

	s := newStore(t)
	var ids []string
	for _, v := range []string{
		"oci:" + filepath.Join(dir, "layout"),
		"oci:" + filepath.Join(dir, "layout") + ":v1",
		"oci-archive:" + ociTar,
		"docker-archive:" + save,
		"docker-archive:" + save + ":example/app:v1",
	} {
		src, err := imageref.Parse(v, false)
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.Pull(context.Background(), v, src)
		if err != nil {
			t.Fatalf("%s: %v", v, err)
		}
		checkTwoLayerBase(t, got)
		ids = append(ids, got.Dir)
	}
	for _, id := range ids[1:] {
		if id != ids[0] {
			t.Fatalf("the same image built twice: %v", ids)
		}
	}
	if _, err := s.Pull(context.Background(), "x", imageref.Source{Kind: imageref.OCILayout, Name: filepath.Join(dir, "layout"), Ref: "nope"}); err == nil ||
		!strings.Contains(err.Error(), `has no image "nope"`) {
		t.Fatalf("missing ref: %v", err)
	}
}

// snapshot lists every path under dir with its size and mode, skipping
// the subtree skip.
func snapshot(t *testing.T, dir, skip string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if p == skip {
			return filepath.SkipDir
		}
		st, err := d.Info()
		if err == nil {
			out = append(out, fmt.Sprintf("%s %v %d", p, st.Mode(), st.Size()))
		}
		return nil
	})
	return out
}

func TestHostileImages(t *testing.T) {
	requireE2fs(t)
	parent := t.TempDir()
	sentinel := filepath.Join(parent, "sentinel")
	if err := os.WriteFile(sentinel, []byte("host"), 0o644); err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(parent, "oci")
	before := snapshot(t, parent, cache)
	layoutDir := filepath.Join(t.TempDir(), "layout")
	lp, err := layout.Write(layoutDir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	add := func(ref string, layers ...[]byte) {
		if err := lp.AppendImage(testImage(t, layers...), layout.WithAnnotations(map[string]string{refNameAnnotation: ref})); err != nil {
			t.Fatal(err)
		}
	}
	add("dotdot", layerTar(t, tfile("../../sentinel", "pwned")))
	add("linked",
		layerTar(t, tdir("etc/"), tlink("etc/evil", sentinel), tlink("up", "../../../.."), tlink("root", "/"),
			tchar("dev/null", 1, 3), tchar("dev/mem", 1, 1)),
		layerTar(t, tfile("etc/evil", "replaced"), tfile("up/escaped", "inside"), tfile("root/etc/viaroot", "inside"),
			tfile("dev/.wh.mem", "")),
	)
	s := &Store{Dir: cache, Keychain: authn.NewMultiKeychain()}

	_, err = s.Pull(context.Background(), "dotdot", imageref.Source{Kind: imageref.OCILayout, Name: layoutDir, Ref: "dotdot"})
	if err == nil || !strings.Contains(err.Error(), ".. component") {
		t.Fatalf("a ../ entry: %v, want it refused", err)
	}
	got, err := s.Pull(context.Background(), "linked", imageref.Source{Kind: imageref.OCILayout, Name: layoutDir, Ref: "linked"})
	if err != nil {
		t.Fatal(err)
	}
	if after := snapshot(t, parent, cache); strings.Join(after, "\n") != strings.Join(before, "\n") {
		t.Fatalf("files outside the cache changed:\nbefore %v\nafter  %v", before, after)
	}
	if b, _ := os.ReadFile(sentinel); string(b) != "host" {
		t.Fatalf("sentinel = %q", b)
	}
	if got := debugfsRun(t, got.RootFS, "cat /etc/evil"); got != "replaced" {
		t.Errorf("/etc/evil = %q, want the later layer's file in place of the link", got)
	}
	if got := lsNames(t, got.RootFS, "/"); !contains(got, "escaped") {
		t.Errorf("/ holds %v, want escaped (written through ../../.. resolved at the root)", got)
	}
	if got := lsNames(t, got.RootFS, "/etc"); strings.Join(got, ",") != "evil,group,passwd,slicer,viaroot" {
		t.Errorf("/etc holds %v, want evil and viaroot (and the guest layer's files)", got)
	}
	if s := stat(t, got.RootFS, "/dev/null"); !strings.Contains(s, "Type: character special") || !strings.Contains(s, "Device major/minor number: 01:03") {
		t.Errorf("/dev/null in the image:\n%s", s)
	}
	if got := lsNames(t, got.RootFS, "/dev"); strings.Join(got, ",") != "null" {
		t.Errorf("/dev holds %v, want null only (mem whited out)", got)
	}
}

func TestUnprivilegedBuildSetsOwnersWithDebugfs(t *testing.T) {
	requireE2fs(t)
	dir := filepath.Join(t.TempDir(), "layout")
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(twoLayers(t)); err != nil {
		t.Fatal(err)
	}
	s := newStore(t)
	s.Unprivileged = true
	got, err := s.Pull(context.Background(), "x", imageref.Source{Kind: imageref.OCILayout, Name: dir})
	if err != nil {
		t.Fatal(err)
	}
	checkTwoLayerBase(t, got)
	if s := stat(t, got.RootFS, "/etc/keep"); !strings.Contains(s, "User:     0   Group:     0") || !strings.Contains(s, "Mode:  0644") {
		t.Errorf("/etc/keep:\n%s", s)
	}
}

func TestRemoveRefusesAnImageInUse(t *testing.T) {
	requireE2fs(t)
	requireQemuImg(t)
	dir := filepath.Join(t.TempDir(), "layout")
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(twoLayers(t)); err != nil {
		t.Fatal(err)
	}
	s := newStore(t)
	ctx := context.Background()
	src := imageref.Source{Kind: imageref.OCILayout, Name: dir}
	img, err := s.Pull(ctx, src.String(), src)
	if err != nil {
		t.Fatal(err)
	}
	if canReflink(img.RootFS, t.TempDir()) {
		t.Skip("reflink clones do not use the base")
	}
	disk := filepath.Join(t.TempDir(), "vm-1.img")
	if _, err := (&Cloner{Qcow2: true}).Clone(ctx, img.RootFS, disk, 512<<20); err != nil {
		t.Fatal(err)
	}
	list, err := s.List(ctx, nil)
	if err != nil || len(list) != 1 || len(list[0].Users) != 1 || list[0].Users[0] != disk || list[0].Size == 0 {
		t.Fatalf("List = %+v, %v", list, err)
	}
	if err := s.Remove(ctx, src.String(), nil); !errors.Is(err, api.ErrConflict) {
		t.Fatalf("Remove of an image in use = %v, want ErrConflict", err)
	}
	if removed, kept, err := s.Wipe(ctx, nil); err != nil || len(removed) != 0 || len(kept) != 1 {
		t.Fatalf("Wipe = %v %v %v; want the image kept", removed, kept, err)
	}
	if _, err := s.Lookup(src.String()); err != nil {
		t.Fatalf("the refused image is gone: %v", err)
	}
	// An extra checker (a daemon's records) can hold an image too.
	os.Remove(disk)
	if err := s.Remove(ctx, img.ID[:19], inUse{"vm-9.img"}); !errors.Is(err, api.ErrConflict) {
		t.Fatalf("Remove with a checker reporting a user = %v, want ErrConflict", err)
	}
	if err := s.Remove(ctx, "sha256:"+img.ID[7:19], nil); err != nil {
		t.Fatalf("Remove by ID prefix: %v", err)
	}
	if _, err := os.Stat(img.Dir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("image dir left: %v", err)
	}
	if blobs, _ := filepath.Glob(filepath.Join(s.Dir, "blobs", "sha256", "*")); len(blobs) != 0 {
		t.Fatalf("blobs left: %v", blobs)
	}
	if err := s.Remove(ctx, src.String(), nil); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("Remove again = %v, want ErrNotFound", err)
	}
}

type inUse []string

func (u inUse) DisksUsing(context.Context, string) ([]string, error) { return u, nil }

// TestOldFormatIsRebuilt: a base built by an earlier version (another
// ociFormat) that no VM disk uses is built again on the next pull.
func TestOldFormatIsRebuilt(t *testing.T) {
	requireE2fs(t)
	dir := filepath.Join(t.TempDir(), "layout")
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(twoLayers(t)); err != nil {
		t.Fatal(err)
	}
	s := newStore(t)
	src := imageref.Source{Kind: imageref.OCILayout, Name: dir}
	first, err := s.Pull(context.Background(), "x", src)
	if err != nil {
		t.Fatal(err)
	}
	manifest := filepath.Join(first.Dir, "image.json")
	data, _ := os.ReadFile(manifest)
	old := strings.Replace(string(data), fmt.Sprintf(`"format": %d`, ociFormat), `"format": 1`, 1)
	if old == string(data) {
		t.Fatalf("image.json has no format field: %s", data)
	}
	os.WriteFile(manifest, []byte(old), 0o644)
	if _, err := s.Lookup("x"); !errors.Is(err, errOldFormat) {
		t.Fatalf("Lookup of an old base: %v, want errOldFormat", err)
	}
	again, err := s.Pull(context.Background(), "x", src)
	if err != nil {
		t.Fatalf("pull over an old base: %v", err)
	}
	checkTwoLayerBase(t, again)
	if data, _ := os.ReadFile(manifest); !strings.Contains(string(data), fmt.Sprintf(`"format": %d`, ociFormat)) {
		t.Errorf("image.json after the rebuild: %s", data)
	}
}
