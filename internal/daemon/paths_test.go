package daemon

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestResolvePathsDefaults(t *testing.T) {
	got := ResolvePaths("", "/srv/work")
	want := Paths{
		DataDir: "/srv/work", State: "/srv/work/.slicer/state.db", Disks: "/srv/work", Commits: "/srv/work/.slicer/commits",
		Run: runDirFor("/srv/work"), Logs: "/var/log/slicer", Images: "/var/lib/slicer/images",
		Token: "/var/lib/slicer/auth/token", Secrets: "/srv/work/.secrets",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("ResolvePaths(\"\") mismatch (-want +got):\n%s", diff)
	}
}

func TestResolvePathsDataDirHoldsEverything(t *testing.T) {
	for _, dir := range []string{"/data/a", "rel"} {
		p := ResolvePaths(dir, "/cwd")
		for _, path := range []string{p.State, p.Disks, p.Run, p.Logs, p.Images, p.Token, p.Secrets, p.socketPath("./api.sock")} {
			if !strings.HasPrefix(path, p.DataDir+"/") {
				t.Errorf("ResolvePaths(%q): %s is outside the data dir %s", dir, path, p.DataDir)
			}
		}
	}
	if got := ResolvePaths("rel", "/cwd").DataDir; got != "/cwd/rel" {
		t.Errorf("relative data dir resolved to %s, want /cwd/rel", got)
	}
}

// Two daemons in two working directories, both with a VM "vm-1", must not
// share its run directory (one would see the other's qemu as its own).
func TestResolvePathsRunDirPerDataDir(t *testing.T) {
	a, b := ResolvePaths("", "/srv/a").Run, ResolvePaths("", "/srv/b").Run
	if a == b {
		t.Fatalf("working directories /srv/a and /srv/b share the run dir %s", a)
	}
	for _, run := range []string{a, b} {
		if filepath.Dir(run) != "/run/slicer" {
			t.Errorf("run dir %s is not under /run/slicer", run)
		}
	}
	if again := ResolvePaths("", "/srv/a/").Run; again != a {
		t.Errorf("the same directory gets run dirs %s and %s", a, again)
	}
}
