package systemd

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openslicer/openslicer/api"
)

func TestRender(t *testing.T) {
	base := UnitOptions{Name: "slicer", Binary: "/usr/local/bin/slicer", Config: "/etc/slicer/slicer.yaml", WorkingDirectory: "/var/lib/slicer/work"}
	with := func(f func(*UnitOptions)) UnitOptions { o := base; f(&o); return o }
	tests := []struct {
		name    string
		opt     UnitOptions
		has     []string
		hasNot  []string
		wantErr string
	}{
		{"defaults", base, []string{
			"ExecStart=/usr/local/bin/slicer up /etc/slicer/slicer.yaml\n",
			"WorkingDirectory=/var/lib/slicer/work\n",
			"TimeoutStopSec=120\n",
			"KillMode=process\n",
			"Description=OpenSlicer microVM daemon (slicer)\n",
			"WantedBy=multi-user.target\n",
			"RestrictNamespaces=net\n",
			"DeviceAllow=/dev/kvm rw\n",
			"DeviceAllow=/dev/net/tun rw\n",
			"CapabilityBoundingSet=~CAP_AUDIT_CONTROL",
		}, []string{"User=", "--suspend-on-shutdown", "ProtectSystem", "PrivateTmp", "MemoryDenyWriteExecute"}, ""},
		{"every flag", with(func(o *UnitOptions) {
			o.User, o.TimeoutStopSec, o.SuspendOnShutdown = "slicer", 300, true
			o.DataDir, o.ImageDir = "/srv/slicer", "/srv/images"
		}), []string{
			"ExecStart=/usr/local/bin/slicer up --data-dir /srv/slicer --image-dir /srv/images --suspend-on-shutdown /etc/slicer/slicer.yaml\n",
			"User=slicer\n",
			"TimeoutStopSec=300\n",
		}, nil, ""},
		{"embedded default config", with(func(o *UnitOptions) { o.Config = "" }), []string{"ExecStart=/usr/local/bin/slicer up\n"}, nil, ""},
		{"paths with blanks and percent signs", with(func(o *UnitOptions) {
			o.Config, o.WorkingDirectory = "/home/a b/50%.yaml", "/home/a b/100%"
		}), []string{
			`ExecStart=/usr/local/bin/slicer up "/home/a b/50%%.yaml"` + "\n",
			"WorkingDirectory=/home/a b/100%%\n",
		}, nil, ""},
		{"bad name", with(func(o *UnitOptions) { o.Name = "my slicer" }), nil, nil, "service name"},
		{"bad user", with(func(o *UnitOptions) { o.User = "root\nExecStartPre=/bin/evil" }), nil, nil, "not a valid user"},
		{"relative working directory", with(func(o *UnitOptions) { o.WorkingDirectory = "work" }), nil, nil, "absolute path"},
		{"negative timeout", with(func(o *UnitOptions) { o.TimeoutStopSec = -1 }), nil, nil, "timeout-stop-sec"},
		{"line break in the config path", with(func(o *UnitOptions) { o.Config = "/etc/a\n[Service]" }), nil, nil, "line break"},
	}
	for _, tt := range tests {
		got, err := Render(tt.opt)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%s: err %v; want one containing %q", tt.name, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		for _, s := range tt.has {
			if !strings.Contains(got, s) {
				t.Errorf("%s: unit lacks %q:\n%s", tt.name, s, got)
			}
		}
		for _, s := range tt.hasNot {
			if strings.Contains(got, s) {
				t.Errorf("%s: unit has %q", tt.name, s)
			}
		}
	}
}

func TestExecLine(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"/bin/slicer", "up"}, "/bin/slicer up"},
		{[]string{"/bin/slicer", "up", "/a b/c.yaml"}, `/bin/slicer up "/a b/c.yaml"`},
		{[]string{"/bin/slicer", `/a"b\c`}, `/bin/slicer "/a\"b\\c"`},
		{[]string{"/bin/slicer", "/x/$HOME/%n"}, "/bin/slicer /x/$$HOME/%%n"},
		{[]string{"/bin/slicer", ";"}, `/bin/slicer ";"`},
		{[]string{"/bin/slicer", ""}, `/bin/slicer ""`},
	}
	for _, tt := range tests {
		got, err := execLine(tt.args)
		if err != nil || got != tt.want {
			t.Errorf("execLine(%q) = %q, %v; want %q", tt.args, got, err, tt.want)
		}
	}
}

func TestUnitName(t *testing.T) {
	for in, want := range map[string]string{"slicer": "slicer", "slicer.service": "slicer", "slicer-ci_2": "slicer-ci_2"} {
		if got, err := UnitName(in); got != want || err != nil {
			t.Errorf("UnitName(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", ".service", "a/b", "a b", "-x", "tpl@x"} {
		if _, err := UnitName(bad); err == nil {
			t.Errorf("UnitName(%q) accepted", bad)
		}
	}
}

// TestUnitVerifies runs systemd-analyze verify on rendered units: every
// setting must be one this systemd knows, with a valid value.
func TestUnitVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("needs systemd-analyze (apt-get install systemd)")
	}
	bin, err := os.Executable() // an executable file, as ExecStart needs
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for name, o := range map[string]UnitOptions{
		"slicer":     {Name: "slicer", Binary: bin, Config: "/etc/slicer/slicer.yaml", WorkingDirectory: dir},
		"slicer-all": {Name: "slicer-all", Binary: bin, Config: "/etc/a b/50%.yaml", WorkingDirectory: dir, User: "slicer", TimeoutStopSec: 30, SuspendOnShutdown: true, DataDir: "/srv/x"},
	} {
		unit, err := Render(o)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, name+".service")
		if err := os.WriteFile(path, []byte(unit), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(analyze, "verify", path).CombinedOutput()
		if err != nil || len(strings.TrimSpace(string(out))) != 0 {
			t.Errorf("systemd-analyze verify %s: %v\n%s\nunit:\n%s", name, err, out, unit)
		}
	}
}

func TestInstall(t *testing.T) {
	dir := t.TempDir()
	reloads := 0
	in := Installer{Dir: dir, Running: func() bool { return true }, Reload: func(context.Context) error { reloads++; return nil }}
	ctx := context.Background()

	got, err := in.Install(ctx, "slicer", "one\n", false)
	if err != nil || got.Path != filepath.Join(dir, "slicer.service") || !got.Reloaded || reloads != 1 {
		t.Fatalf("first install = %+v, %v (reloads %d)", got, err, reloads)
	}
	if _, err := in.Install(ctx, "slicer.service", "two\n", false); !errors.Is(err, api.ErrConflict) || !strings.Contains(err.Error(), "--force") {
		t.Errorf("second install without force: %v; want a conflict naming --force", err)
	}
	if b, _ := os.ReadFile(got.Path); string(b) != "one\n" {
		t.Errorf("unit replaced without force: %q", b)
	}
	if _, err := in.Install(ctx, "slicer", "two\n", true); err != nil {
		t.Fatalf("install with force: %v", err)
	}
	if b, _ := os.ReadFile(got.Path); string(b) != "two\n" {
		t.Errorf("unit after --force: %q", b)
	}
	if fi, _ := os.Stat(got.Path); fi.Mode().Perm() != 0o644 {
		t.Errorf("unit mode %v; want 0644", fi.Mode().Perm())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("%d files in the unit dir; want only the unit", len(entries))
	}

	// No systemd: written, not reloaded. A failed reload is an error that
	// says the unit was written.
	in.Running = func() bool { return false }
	if got, err := in.Install(ctx, "other", "x\n", false); err != nil || got.Reloaded || reloads != 2 {
		t.Errorf("install without systemd = %+v, %v (reloads %d); want written, not reloaded", got, err, reloads)
	}
	in.Running = func() bool { return true }
	in.Reload = func(context.Context) error { return errors.New("systemctl daemon-reload: exit status 1") }
	if _, err := in.Install(ctx, "third", "x\n", false); err == nil || !strings.Contains(err.Error(), "wrote "+filepath.Join(dir, "third.service")) {
		t.Errorf("failed reload: %v", err)
	}
}
