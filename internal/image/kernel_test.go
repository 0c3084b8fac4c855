package image

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestParseKernelDepends(t *testing.T) {
	tests := []struct {
		name, out, want string
	}{
		{"debian 12", "linux-image-cloud-amd64\n  Depends: linux-image-6.1.0-56-cloud-amd64\n", "linux-image-6.1.0-56-cloud-amd64"},
		{"alternative first", "linux-image-cloud-amd64\n |Depends: linux-image-6.1.0-9-cloud-amd64\n  Depends: other\n", "linux-image-6.1.0-9-cloud-amd64"},
		{"other dependencies ignored", "x\n  Depends: initramfs-tools\n  Recommends: linux-image-y\n  Depends: linux-image-z\n", "linux-image-z"},
		{"none", "linux-image-cloud-amd64\n", ""},
	}
	for _, tt := range tests {
		got, err := parseKernelDepends([]byte(tt.out))
		if got != tt.want || (err != nil) != (tt.want == "") {
			t.Errorf("%s: parseKernelDepends() = %q, %v; want %q", tt.name, got, err, tt.want)
		}
	}
}

func TestCachedDebPicksNewest(t *testing.T) {
	dir := t.TempDir()
	old := filepath.Join(dir, "linux-image-6.1.0-9-cloud-amd64_6.1.27-1_amd64.deb")
	newer := filepath.Join(dir, "linux-image-6.1.0-56-cloud-amd64_6.1.192-2_amd64.deb")
	for i, p := range []string{old, newer} {
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		mt := time.Now().Add(time.Duration(i-2) * time.Hour)
		if err := os.Chtimes(p, mt, mt); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, ".download-1"), 0o755); err != nil {
		t.Fatal(err)
	}
	got, err := cachedDeb(dir, "linux-image-*-cloud-*_*.deb")
	if err != nil || got != newer {
		t.Errorf("cachedDeb() = %q, %v; want %q", got, err, newer)
	}
	got, err = cachedDeb(dir, "linux-image-6.1.0-9-cloud-amd64_*.deb")
	if err != nil || got != old {
		t.Errorf("cachedDeb(by name) = %q, %v; want %q", got, err, old)
	}
	got, err = cachedDeb(dir, "nothing_*.deb")
	if err != nil || got != "" {
		t.Errorf("cachedDeb(no match) = %q, %v; want \"\"", got, err)
	}
}
