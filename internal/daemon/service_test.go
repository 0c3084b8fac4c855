package daemon

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestServiceGeneratePrintsTheUnit(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	if err := os.WriteFile("slicer.yaml", []byte("config:\n  host_groups:\n  - name: web\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	cmd := serviceCommand(&out)
	cmd.SetArgs([]string{"generate", "--name", "web", "--timeout-stop-sec", "60", "--data-dir", "data", "slicer.yaml"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	exe, _ := os.Executable()
	unit := out.String()
	for _, want := range []string{
		"ExecStart=" + exe + " up --data-dir " + filepath.Join(dir, "data") + " " + filepath.Join(dir, "slicer.yaml") + "\n",
		"WorkingDirectory=" + dir + "\n",
		"TimeoutStopSec=60\n",
	} {
		if !strings.Contains(unit, want) {
			t.Errorf("unit lacks %q:\n%s", want, unit)
		}
	}
}

func TestServiceGenerateRefuses(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("config:\n  host_groups:\n  - name: web\n    vcpuz: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"generate", bad}, `"name" not set`},
		{[]string{"generate", "--name", "web", bad}, "vcpuz"},
		{[]string{"generate", "--name", "web", filepath.Join(dir, "missing.yaml")}, "no such file"},
		{[]string{"generate", "--name", "a/b"}, "service name"},
	} {
		var out bytes.Buffer
		cmd := serviceCommand(&out)
		cmd.SetArgs(tt.args)
		cmd.SilenceUsage, cmd.SilenceErrors = true, true
		err := cmd.Execute()
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: err %v; want one containing %q", tt.args, err, tt.want)
		}
		if out.Len() != 0 {
			t.Errorf("%v: printed %q", tt.args, out.String())
		}
	}
}
