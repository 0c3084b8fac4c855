package image

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestDigestInputs(t *testing.T) {
	base := digestInputs{
		Format: 1, KernelDeb: "linux-image-6.1.0-56-cloud-amd64_6.1.192-2_amd64.deb", KernelDebSize: 26713492,
		AgentSHA256: "aa", BusyboxSHA256: "bb", BashSHA256: "cc",
	}
	if base.digest() != base.digest() {
		t.Fatalf("digest() is not stable")
	}
	if got := len(base.digest()); got != 64 {
		t.Errorf("len(digest()) = %d, want 64 hex digits", got)
	}
	changes := map[string]func(*digestInputs){
		"format":      func(in *digestInputs) { in.Format++ },
		"kernel deb":  func(in *digestInputs) { in.KernelDeb = "linux-image-6.1.0-57-cloud-amd64_6.1.200-1_amd64.deb" },
		"kernel size": func(in *digestInputs) { in.KernelDebSize++ },
		"agent":       func(in *digestInputs) { in.AgentSHA256 = "ab" },
		"busybox":     func(in *digestInputs) { in.BusyboxSHA256 = "bc" },
		"bash":        func(in *digestInputs) { in.BashSHA256 = "cd" },
	}
	for name, change := range changes {
		in := base
		change(&in)
		if in.digest() == base.digest() {
			t.Errorf("changing the %s leaves the digest unchanged", name)
		}
	}
}

func TestReadInputs(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	deb := write("linux-image-x_1_amd64.deb", "12345")
	got, err := readInputs(deb, write("agent", "agent"), write("busybox", ""), write("bash", "agent"))
	if err != nil {
		t.Fatalf("readInputs() = %v", err)
	}
	want := digestInputs{
		Format: formatVersion, KernelDeb: "linux-image-x_1_amd64.deb", KernelDebSize: 5,
		AgentSHA256:   "d4f0bc5a29de06b510f9aa428f1eedba926012b591fef7a518e776a7c9bd1824",
		BusyboxSHA256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
		BashSHA256:    "d4f0bc5a29de06b510f9aa428f1eedba926012b591fef7a518e776a7c9bd1824",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("readInputs() (-want +got):\n%s", diff)
	}
}

func TestRequireStatic(t *testing.T) {
	script := filepath.Join(t.TempDir(), "script")
	if err := os.WriteFile(script, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path    string
		wantErr string // "" for a static binary
	}{
		{script, "not an ELF executable"},
		{busyboxPath, ""},                       // busybox-static
		{"/usr/bin/dpkg", "dynamically linked"}, // any Debian
	}
	for _, tt := range tests {
		if _, err := os.Stat(tt.path); err != nil {
			t.Logf("%s: %v; not checked", tt.path, err)
			continue
		}
		err := requireStatic(tt.path, "x", "fix it")
		if tt.wantErr == "" && err != nil {
			t.Errorf("requireStatic(%s) = %v, want nil", tt.path, err)
		}
		if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "fix it")) {
			t.Errorf("requireStatic(%s) = %v, want an error with %q and the fix", tt.path, err, tt.wantErr)
		}
	}
}
