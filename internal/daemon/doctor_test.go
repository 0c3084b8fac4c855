package daemon

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDoctorOptionsResolveLikeUp(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "slicer.yaml")
	if err := os.WriteFile(cfg, []byte("config:\n  host_groups:\n  - name: web\n  api:\n    bind_address: ./api.sock\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	opt, err := doctorOptions([]string{cfg}, filepath.Join(dir, "data"), "/srv/images", "", "")
	if err != nil {
		t.Fatal(err)
	}
	if opt.ConfigErr != nil || opt.Config.HostGroups[0].Name != "web" {
		t.Fatalf("config: %v, %+v", opt.ConfigErr, opt.Config)
	}
	if opt.DataDir != filepath.Join(dir, "data") || opt.ImageDir != "/srv/images" {
		t.Errorf("dirs %s, %s", opt.DataDir, opt.ImageDir)
	}
	if opt.APISocket != filepath.Join(dir, "data", "api.sock") {
		t.Errorf("socket %q; want it resolved in the data dir", opt.APISocket)
	}
}

// A config that does not load is reported, and the other checks run on
// the embedded default.
func TestDoctorOptionsBadConfig(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(cfg, []byte("config:\n  host_groups:\n  - name: web\n    vcpuz: 2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	opt, err := doctorOptions([]string{cfg}, dir, "", "", "")
	if err != nil {
		t.Fatal(err)
	}
	if opt.ConfigErr == nil || !strings.Contains(opt.ConfigErr.Error(), "vcpuz") {
		t.Errorf("ConfigErr = %v; want the unknown key named", opt.ConfigErr)
	}
	if opt.Config == nil || opt.Config.HostGroups[0].Name != "sandbox" || opt.APISocket != "" {
		t.Errorf("fallback config %+v, socket %q; want the embedded default on TCP", opt.Config, opt.APISocket)
	}
	if opt.ImageDir != filepath.Join(dir, "images") {
		t.Errorf("image dir %q; want <data-dir>/images", opt.ImageDir)
	}
}
