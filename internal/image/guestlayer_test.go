package image

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openslicer/openslicer/internal/agent/imageconfig"
	"github.com/openslicer/openslicer/internal/image/unpack"
)

func TestGuestUser(t *testing.T) {
	alpinePasswd := "root:x:0:0:root:/root:/bin/ash\nnobody:x:65534:65534:nobody:/:/sbin/nologin\n"
	alpineGroup := "root:x:0:root\nnogroup:x:65533:\n"
	tests := []struct {
		name   string
		in     accountFiles
		want   newUser
		wantOK bool
	}{
		{
			name: "has uid 1000 already (node's image)",
			in:   accountFiles{Passwd: []byte("root:x:0:0::/root:/bin/sh\nnode:x:1000:1000::/home/node:/bin/bash\n")},
		},
		{
			name: "alpine: ubuntu added with its group, sh as shell, shadow kept without password",
			in:   accountFiles{Passwd: []byte(alpinePasswd), Group: []byte(alpineGroup), Shadow: []byte("root:*::0:::::")},
			want: newUser{
				Name: "ubuntu", UID: 1000, GID: 1000, Home: "/home/ubuntu", Shell: "/bin/sh",
				Passwd: []byte(alpinePasswd + "ubuntu:x:1000:1000:ubuntu:/home/ubuntu:/bin/sh\n"),
				Group:  []byte(alpineGroup + "ubuntu:x:1000:\n"),
				Shadow: []byte("root:*::0:::::\nubuntu:*:::::::\n"),
			},
			wantOK: true,
		},
		{
			name: "debian slim: bash, no shadow file stays without one",
			in:   accountFiles{Passwd: []byte("root:x:0:0:root:/root:/bin/bash"), Group: []byte("root:x:0:"), HasBash: true},
			want: newUser{
				Name: "ubuntu", UID: 1000, GID: 1000, Home: "/home/ubuntu", Shell: "/bin/bash",
				Passwd: []byte("root:x:0:0:root:/root:/bin/bash\nubuntu:x:1000:1000:ubuntu:/home/ubuntu:/bin/bash\n"),
				Group:  []byte("root:x:0:\nubuntu:x:1000:\n"),
			},
			wantOK: true,
		},
		{
			name: "no account files: root comes too",
			in:   accountFiles{},
			want: newUser{
				Name: "ubuntu", UID: 1000, GID: 1000, Home: "/home/ubuntu", Shell: "/bin/sh",
				Passwd: []byte("root:x:0:0:root:/root:/bin/sh\nubuntu:x:1000:1000:ubuntu:/home/ubuntu:/bin/sh\n"),
				Group:  []byte("root:x:0:\nubuntu:x:1000:\n"),
			},
			wantOK: true,
		},
		{
			name: "gid 1000 taken by another group: shared, not added",
			in:   accountFiles{Passwd: []byte("root:x:0:0::/root:/bin/sh\n"), Group: []byte("root:x:0:\nstaff:x:1000:\n")},
			want: newUser{
				Name: "ubuntu", UID: 1000, GID: 1000, Home: "/home/ubuntu", Shell: "/bin/sh",
				Passwd: []byte("root:x:0:0::/root:/bin/sh\nubuntu:x:1000:1000:ubuntu:/home/ubuntu:/bin/sh\n"),
			},
			wantOK: true,
		},
		{
			name: "a group named ubuntu elsewhere is the primary group",
			in:   accountFiles{Passwd: []byte("root:x:0:0::/root:/bin/sh\n"), Group: []byte("root:x:0:\nubuntu:x:2000:\n")},
			want: newUser{
				Name: "ubuntu", UID: 1000, GID: 2000, Home: "/home/ubuntu", Shell: "/bin/sh",
				Passwd: []byte("root:x:0:0::/root:/bin/sh\nubuntu:x:1000:2000:ubuntu:/home/ubuntu:/bin/sh\n"),
			},
			wantOK: true,
		},
		{
			name: "ubuntu taken by another uid: slicer",
			in:   accountFiles{Passwd: []byte("root:x:0:0::/root:/bin/sh\nubuntu:x:1001:1001::/home/ubuntu:/bin/sh\n"), Group: []byte("root:x:0:\n")},
			want: newUser{
				Name: "slicer", UID: 1000, GID: 1000, Home: "/home/slicer", Shell: "/bin/sh",
				Passwd: []byte("root:x:0:0::/root:/bin/sh\nubuntu:x:1001:1001::/home/ubuntu:/bin/sh\nslicer:x:1000:1000:slicer:/home/slicer:/bin/sh\n"),
				Group:  []byte("root:x:0:\nslicer:x:1000:\n"),
			},
			wantOK: true,
		},
		{
			name: "ubuntu and slicer both taken: left to root",
			in:   accountFiles{Passwd: []byte("ubuntu:x:1001:1001::/:/bin/sh\nslicer:x:1002:1002::/:/bin/sh\n")},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := guestUser(tt.in)
			if ok != tt.wantOK {
				t.Fatalf("ok = %v, want %v", ok, tt.wantOK)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("guestUser (-want +got):\n%s", diff)
			}
		})
	}
}

// TestGuestLayer applies the guest layer of a small alpine-like tree and
// checks what it adds: the image config file, and the default user with
// its home, skel files and sudo rule, the account files keeping the
// owners and modes the image gave them.
func TestGuestLayer(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"etc/passwd":        "root:x:0:0:root:/root:/bin/ash\n",
		"etc/group":         "root:x:0:\nshadow:x:42:\n",
		"etc/shadow":        "root:*::::::\n",
		"etc/skel/.profile": "PS1='$ '\n",
		"bin/bash":          "#!",
	} {
		os.MkdirAll(filepath.Join(dir, filepath.Dir(name)), 0o755)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.Mkdir(filepath.Join(dir, "etc/sudoers.d"), 0o755)
	want := map[string]unpack.Meta{"etc/shadow": {UID: 0, GID: 42, Mode: 0o640}}
	cfg := ExecDefaults{Env: []string{"PATH=/opt/bin:/bin"}, WorkingDir: "/srv", User: "app", Cmd: []string{"x"}}
	data, user, err := guestLayer(dir, want, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if user != "ubuntu" {
		t.Errorf("user = %q, want ubuntu", user)
	}
	type ent struct {
		Mode     int64
		UID, GID int
		Body     string
	}
	got := map[string]ent{}
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(tr)
		got[h.Name] = ent{h.Mode, h.Uid, h.Gid, string(body)}
	}
	conf := imageconfig.Config{Env: cfg.Env, WorkingDir: "/srv", User: "app"}
	wantEnts := map[string]ent{
		"etc/slicer/image.json":          {0o644, 0, 0, string(conf.Marshal())},
		"etc/passwd":                     {0o644, 0, 0, "root:x:0:0:root:/root:/bin/ash\nubuntu:x:1000:1000:ubuntu:/home/ubuntu:/bin/bash\n"},
		"etc/group":                      {0o644, 0, 0, "root:x:0:\nshadow:x:42:\nubuntu:x:1000:\n"},
		"etc/shadow":                     {0o640, 0, 42, "root:*::::::\nubuntu:*:::::::\n"},
		"home/ubuntu/":                   {0o755, 1000, 1000, ""},
		"home/ubuntu/.profile":           {0o644, 1000, 1000, "PS1='$ '\n"},
		"etc/sudoers.d/90-slicer-ubuntu": {0o440, 0, 0, "ubuntu ALL=(ALL) NOPASSWD:ALL\n"},
	}
	if diff := cmp.Diff(wantEnts, got); diff != "" {
		t.Errorf("guest layer (-want +got):\n%s", diff)
	}

	// The layer applies: the tree gets the files.
	stage := t.TempDir()
	tree, err := unpack.New(stage, unpack.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer tree.Close()
	if err := tree.Apply(bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(stage, "etc/slicer/image.json")); err != nil || string(b) != string(conf.Marshal()) {
		t.Errorf("image.json in the tree: %q %v", b, err)
	}
}

func TestGuestLayerKeepsAnImageWithItsUser(t *testing.T) {
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "etc"), 0o755)
	os.WriteFile(filepath.Join(dir, "etc/passwd"), []byte("root:x:0:0::/root:/bin/sh\nnode:x:1000:1000::/home/node:/bin/sh\n"), 0o644)
	data, user, err := guestLayer(dir, nil, ExecDefaults{})
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(bytes.NewReader(data))
	var names []string
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		names = append(names, h.Name)
	}
	if user != "" || len(names) != 1 || names[0] != "etc/slicer/image.json" {
		t.Errorf("user %q, entries %v: want only the image config", user, names)
	}
}

// TestGuestLayerReadsOnlyTheTree: an image's /etc/passwd that points at
// the host's (an absolute symlink) is not followed out of the tree.
func TestGuestLayerReadsOnlyTheTree(t *testing.T) {
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "etc"), 0o755)
	if err := os.Symlink("/etc/passwd", filepath.Join(dir, "etc/passwd")); err != nil {
		t.Fatal(err)
	}
	data, _, err := guestLayer(dir, nil, ExecDefaults{})
	if err != nil {
		t.Fatal(err)
	}
	host, _ := os.ReadFile("/etc/passwd")
	if len(host) > 0 && bytes.Contains(data, host) {
		t.Error("the guest layer holds the host's /etc/passwd")
	}
}
