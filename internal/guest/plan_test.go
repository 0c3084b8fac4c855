package guest

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/agent/imageconfig"
)

const testPasswd = `root:x:0:0:root:/root:/bin/sh
# a comment
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
broken line
slicer:x:1000:1000:slicer:/home/slicer:/bin/sh
other:x:1001:1002::/home/other:/bin/sh
`

const testGroup = `root:x:0:
slicer:x:1000:
docker:x:999:slicer,other
wheel:x:10:other
`

func ptr[T any](v T) *T { return &v }

func TestParsePasswd(t *testing.T) {
	want := []account{
		{Name: "root", UID: 0, GID: 0, Home: "/root", Shell: "/bin/sh"},
		{Name: "daemon", UID: 1, GID: 1, Home: "/usr/sbin", Shell: "/usr/sbin/nologin"},
		{Name: "slicer", UID: 1000, GID: 1000, Home: "/home/slicer", Shell: "/bin/sh"},
		{Name: "other", UID: 1001, GID: 1002, Home: "/home/other", Shell: "/bin/sh"},
	}
	if diff := cmp.Diff(want, parsePasswd([]byte(testPasswd))); diff != "" {
		t.Errorf("parsePasswd (-want +got):\n%s", diff)
	}
}

func TestPlanExec(t *testing.T) {
	accounts := parsePasswd([]byte(testPasswd))
	groups := parseGroup([]byte(testGroup))
	dirs := map[string]bool{"/root": true, "/home/slicer": true}
	isDir := func(p string) bool { return dirs[p] }
	tests := []struct {
		name     string
		req      api.ExecRequest
		accounts []account
		img      imageconfig.Config
		want     procSpec
	}{
		{
			name: "default user is uid 1000",
			req:  api.ExecRequest{Command: "echo", Args: []string{"a b", "c"}},
			want: procSpec{
				Argv: []string{"echo", "a b", "c"},
				Env:  []string{"PATH=" + defaultPath, "HOME=/home/slicer", "USER=slicer"},
				Dir:  "/home/slicer", UID: 1000, GID: 1000, Groups: []uint32{1000, 999},
			},
		},
		{
			name:     "default user is root without a uid-1000 user",
			req:      api.ExecRequest{Command: "id"},
			accounts: accounts[:2],
			want: procSpec{
				Argv: []string{"id"}, Env: []string{"PATH=" + defaultPath, "HOME=/root", "USER=root"},
				Dir: "/root", UID: 0, GID: 0, Groups: []uint32{0},
			},
		},
		{
			name:     "root without passwd",
			req:      api.ExecRequest{Command: "id"},
			accounts: []account{},
			want: procSpec{
				Argv: []string{"id"}, Env: []string{"PATH=" + defaultPath, "HOME=/root", "USER=root"},
				Dir: "/root", UID: 0, GID: 0, Groups: []uint32{0},
			},
		},
		{
			name: "uid 0 is root",
			req:  api.ExecRequest{Command: "id", UID: ptr(uint32(0)), GID: ptr(uint32(0))},
			want: procSpec{
				Argv: []string{"id"}, Env: []string{"PATH=" + defaultPath, "HOME=/root", "USER=root"},
				Dir: "/root", UID: 0, GID: 0, Groups: []uint32{0},
			},
		},
		{
			name: "explicit gid wins over the user's group",
			req:  api.ExecRequest{Command: "id", UID: ptr(uint32(1001)), GID: ptr(uint32(0))},
			want: procSpec{
				Argv: []string{"id"}, Env: []string{"PATH=" + defaultPath, "HOME=/home/other", "USER=other"},
				Dir: "/", UID: 1001, GID: 0, Groups: []uint32{0, 999, 10},
			},
		},
		{
			name: "unknown uid",
			req:  api.ExecRequest{Command: "id", UID: ptr(uint32(4242))},
			want: procSpec{
				Argv: []string{"id"}, Env: []string{"PATH=" + defaultPath, "HOME=/"},
				Dir: "/", UID: 4242, GID: 4242,
			},
		},
		{
			name: "shell, env, cwd under home",
			req: api.ExecRequest{
				Command: "ls -l | sort", Args: []string{"-r"}, Shell: "/bin/sh",
				Env: []string{"A=1", "PATH=/opt/bin"}, Cwd: "~/src",
			},
			want: procSpec{
				Argv: []string{"/bin/sh", "-c", "ls -l | sort -r"},
				Env:  []string{"PATH=/opt/bin", "HOME=/home/slicer", "USER=slicer", "A=1"},
				Dir:  "/home/slicer/src", UID: 1000, GID: 1000, Groups: []uint32{1000, 999},
			},
		},
		{
			name: "the image's Env, WorkingDir and User are the defaults",
			req:  api.ExecRequest{Command: "python3", Args: []string{"-V"}},
			img: imageconfig.Config{
				Env:        []string{"PATH=/usr/local/bin:/usr/bin", "LANG=C.UTF-8", "HOME=/srv"},
				WorkingDir: "/root", User: "other:docker",
			},
			want: procSpec{
				Argv: []string{"python3", "-V"},
				Env:  []string{"PATH=/usr/local/bin:/usr/bin", "HOME=/srv", "USER=other", "LANG=C.UTF-8"},
				Dir:  "/root", UID: 1001, GID: 999, Groups: []uint32{999, 10},
			},
		},
		{
			name: "the request's uid, gid, env and cwd win over the image's",
			req: api.ExecRequest{
				Command: "env", UID: ptr(uint32(0)), GID: ptr(uint32(10)), Cwd: "/tmp",
				Env: []string{"LANG=de_DE.UTF-8", "PATH=/bin"},
			},
			img: imageconfig.Config{Env: []string{"PATH=/usr/local/bin", "LANG=C.UTF-8"}, WorkingDir: "/root", User: "other"},
			want: procSpec{
				Argv: []string{"env"},
				Env:  []string{"PATH=/bin", "HOME=/root", "USER=root", "LANG=de_DE.UTF-8"},
				Dir:  "/tmp", UID: 0, GID: 10, Groups: []uint32{10},
			},
		},
		{
			name: "a root User leaves the default to uid 1000; a missing WorkingDir to home",
			req:  api.ExecRequest{Command: "id"},
			img:  imageconfig.Config{User: "root", WorkingDir: "/app"},
			want: procSpec{
				Argv: []string{"id"}, Env: []string{"PATH=" + defaultPath, "HOME=/home/slicer", "USER=slicer"},
				Dir: "/home/slicer", UID: 1000, GID: 1000, Groups: []uint32{1000, 999},
			},
		},
		{
			name: "a relative WorkingDir is taken from /",
			req:  api.ExecRequest{Command: "pwd", UID: ptr(uint32(1000))},
			img:  imageconfig.Config{WorkingDir: "root"},
			want: procSpec{
				Argv: []string{"pwd"}, Env: []string{"PATH=" + defaultPath, "HOME=/home/slicer", "USER=slicer"},
				Dir: "/root", UID: 1000, GID: 1000, Groups: []uint32{1000, 999},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			as := accounts
			if tt.accounts != nil {
				as = tt.accounts
			}
			got, err := planExec(&tt.req, as, groups, tt.img, isDir)
			if err != nil {
				t.Fatalf("planExec: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("planExec (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPlanExecBadEnv(t *testing.T) {
	for _, env := range []string{"NOEQUALS", "=value"} {
		_, err := planExec(&api.ExecRequest{Command: "id", Env: []string{env}}, nil, nil, imageconfig.Config{}, func(string) bool { return true })
		if !errors.Is(err, api.ErrInvalid) {
			t.Errorf("planExec with env %q: err = %v, want ErrInvalid", env, err)
		}
	}
}

func TestWorkDir(t *testing.T) {
	home := "/home/u"
	exists := func(p string) bool { return p == home }
	tests := []struct{ cwd, home, want string }{
		{"", home, home},
		{"", "/home/missing", "/"},
		{"~", home, home},
		{"~/a/../b", home, "/home/u/b"},
		{"proj", home, "/home/u/proj"},
		{"/srv//x/", home, "/srv/x"},
	}
	for _, tt := range tests {
		if got := workDir(tt.cwd, tt.home, exists); got != tt.want {
			t.Errorf("workDir(%q, %q) = %q, want %q", tt.cwd, tt.home, got, tt.want)
		}
	}
}

func TestLookPath(t *testing.T) {
	dir1, dir2 := t.TempDir(), t.TempDir()
	write := func(p string, mode os.FileMode) {
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), mode); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(dir1, "tool"), 0o644) // not executable: skipped
	write(filepath.Join(dir2, "tool"), 0o755)
	if err := os.Mkdir(filepath.Join(dir1, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	list := dir1 + string(filepath.ListSeparator) + dir2
	tests := []struct {
		name, want string
		notFound   bool
	}{
		{name: "tool", want: filepath.Join(dir2, "tool")},
		{name: "sub", notFound: true}, // directories are not commands
		{name: "missing", notFound: true},
		{name: "./rel/x", want: "./rel/x"},
		{name: "/abs/x", want: "/abs/x"},
	}
	for _, tt := range tests {
		got, err := lookPath(tt.name, list)
		if tt.notFound {
			if !errors.Is(err, exec.ErrNotFound) {
				t.Errorf("lookPath(%q) = %q, %v; want ErrNotFound", tt.name, got, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("lookPath(%q) = %q, %v; want %q", tt.name, got, err, tt.want)
		}
	}
}

func TestEnvValue(t *testing.T) {
	env := []string{"PATH=/a", "X=1", "PATH=/b"}
	if got := envValue(env, "PATH"); got != "/b" {
		t.Errorf("envValue(PATH) = %q, want the last, /b", got)
	}
	if got := envValue(env, "Y"); got != "" {
		t.Errorf("envValue(Y) = %q, want empty", got)
	}
}
