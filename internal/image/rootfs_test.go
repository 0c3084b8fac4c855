package image

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestAccountFiles(t *testing.T) {
	if got, want := renderPasswd(minAccounts),
		"root:x:0:0:root:/root:/bin/bash\nubuntu:x:1000:1000:ubuntu:/home/ubuntu:/bin/bash\n"; got != want {
		t.Errorf("renderPasswd() = %q, want %q", got, want)
	}
	if got, want := renderGroup(minAccounts), "root:x:0:\nubuntu:x:1000:\n"; got != want {
		t.Errorf("renderGroup() = %q, want %q", got, want)
	}
	if got, want := renderShadow(minAccounts), "root:!::0:99999:7:::\nubuntu:!::0:99999:7:::\n"; got != want {
		t.Errorf("renderShadow() = %q, want %q", got, want)
	}
}

func TestParseApplets(t *testing.T) {
	got, err := parseApplets([]byte("usr/bin/[\nbin/ash\nbin/busybox\n\nsbin/init\nlinuxrc\n"))
	if err != nil {
		t.Fatalf("parseApplets() error = %v", err)
	}
	if diff := cmp.Diff([]string{"usr/bin/[", "bin/ash", "sbin/init", "linuxrc"}, got); diff != "" {
		t.Errorf("parseApplets() (-want +got):\n%s", diff)
	}
	for _, bad := range []string{"/bin/sh\n", "../etc/x\n", "bin/../../x\n", ""} {
		if _, err := parseApplets([]byte(bad)); err == nil {
			t.Errorf("parseApplets(%q) = nil error, want one", bad)
		}
	}
}

func TestRootfsEntries(t *testing.T) {
	es := rootfsEntries("/host/agent", "/host/busybox", "/host/bash", []string{"bin/sh", "bin/bash", "usr/sbin/chroot"})
	index := map[string]int{}
	for i, e := range es {
		if _, dup := index[e.Path]; dup {
			t.Errorf("path %q planned twice", e.Path)
		}
		index[e.Path] = i
	}
	// Every parent comes before its children.
	for i, e := range es {
		if p := filepath.Dir(e.Path); p != "." {
			if j, ok := index[p]; !ok || j > i {
				t.Errorf("parent %q of %q missing or after it", p, e.Path)
			}
		}
	}
	check := func(p string, mode fs.FileMode, uid int) {
		t.Helper()
		i, ok := index[p]
		if !ok {
			t.Errorf("%s not planned", p)
			return
		}
		if e := es[i]; e.Mode != mode || e.UID != uid || e.GID != uid {
			t.Errorf("%s = mode %v owner %d:%d, want %v %d:%d", p, e.Mode, e.UID, e.GID, mode, uid, uid)
		}
	}
	check("bin/busybox", 0o755, 0)
	check("usr/local/bin/slicer-agent", 0o755, 0)
	check("home/ubuntu", fs.ModeDir|0o755, 1000)
	check("bin/bash", 0o755, 0)
	if e := es[index["bin/bash"]]; e.Src != "/host/bash" {
		t.Errorf("bin/bash is %+v, want a copy of bash-static rather than a busybox link", e)
	}
	check("root", fs.ModeDir|0o700, 0)
	check("tmp", fs.ModeDir|fs.ModeSticky|0o777, 0)
	check("usr/sbin", fs.ModeDir|0o755, 0)
	check("etc/shadow", 0o600, 0)
	check("etc/slicer", fs.ModeDir|0o755, 0)
	for _, d := range []string{"dev", "proc", "sys", "run", "var", "mnt"} {
		check(d, fs.ModeDir|0o755, 0)
	}
	if e := es[index["usr/sbin/chroot"]]; e.Target != "/bin/busybox" {
		t.Errorf("usr/sbin/chroot -> %q, want /bin/busybox", e.Target)
	}
	if got := string(es[index["etc/os-release"]].Data); !strings.Contains(got, `NAME="OpenSlicer min"`) {
		t.Errorf("os-release = %q", got)
	}
	if got := string(es[index["etc/profile"]].Data); !strings.Contains(got, "export PATH=") {
		t.Errorf("profile = %q", got)
	}
}

func TestWithParentsKeepsExplicitDirectory(t *testing.T) {
	home := dirEntry("home/ubuntu", 0o700)
	home.UID = 1000
	got := withParents([]entry{fileEntry("home/ubuntu/x", 0o644, ""), home})
	want := []entry{dirEntry("home", 0o755), home, fileEntry("home/ubuntu/x", 0o644, "")}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("withParents() (-want +got):\n%s", diff)
	}
}

func TestOwnerFixes(t *testing.T) {
	home := dirEntry("home/ubuntu", 0o755)
	home.UID, home.GID = 1000, 1000
	es := []entry{dirEntry("etc", 0o755), home}
	tests := []struct {
		name   string
		staged map[string][2]int
		want   []string
	}{
		{"built as root", map[string][2]int{"etc": {0, 0}, "home/ubuntu": {0, 0}},
			[]string{"set_inode_field /home/ubuntu uid 1000", "set_inode_field /home/ubuntu gid 1000"}},
		{"built as a user", map[string][2]int{"etc": {1000, 1000}, "home/ubuntu": {1000, 1000}},
			[]string{"set_inode_field /etc uid 0", "set_inode_field /etc gid 0"}},
		{"user with another group", map[string][2]int{"etc": {500, 1000}, "home/ubuntu": {500, 1000}},
			[]string{"set_inode_field /etc uid 0", "set_inode_field /etc gid 0", "set_inode_field /home/ubuntu uid 1000"}},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, ownerFixes(es, tt.staged)); diff != "" {
			t.Errorf("%s: ownerFixes() (-want +got):\n%s", tt.name, diff)
		}
	}
}

func TestMkfsArgs(t *testing.T) {
	d := strings.Repeat("0123456789abcdef", 4)
	got := mkfsArgs("/s", "/o.ext4", d)
	want := []string{"-q", "-F", "-T", "default", "-b", "4096", "-L", "slicer-root",
		"-U", "01234567-89ab-cdef-0123-456789abcdef",
		"-E", "root_owner=0:0,hash_seed=01234567-89ab-cdef-0123-456789abcdef",
		"-d", "/s", "/o.ext4"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("mkfsArgs() (-want +got):\n%s", diff)
	}
}

func TestStageTree(t *testing.T) {
	dir := t.TempDir()
	es := withParents([]entry{
		dirEntry("tmp", 0o777|fs.ModeSticky),
		fileEntry("etc/shadow", 0o600, "x"),
		symlinkEntry("bin/sh", "/bin/busybox"),
	})
	if err := stageTree(dir, es); err != nil {
		t.Fatalf("stageTree() = %v", err)
	}
	for p, want := range map[string]fs.FileMode{
		"tmp":        fs.ModeDir | fs.ModeSticky | 0o777,
		"etc/shadow": 0o600,
		"bin/sh":     fs.ModeSymlink | 0o777,
	} {
		st, err := os.Lstat(filepath.Join(dir, p))
		if err != nil {
			t.Errorf("lstat %s: %v", p, err)
			continue
		}
		if st.Mode() != want {
			t.Errorf("%s mode = %v, want %v", p, st.Mode(), want)
		}
	}
	if err := stageTree(t.TempDir(), []entry{fileEntry("../escape", 0o644, "")}); err == nil {
		t.Errorf("stageTree(../escape) = nil error, want one")
	}
}
