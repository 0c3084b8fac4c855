package pid1

import (
	"os"
	"path/filepath"
	"testing"
)

// TestInstallAgentUnit installs the unit into an empty root, twice (every
// boot does), and once more over a unit a user edited and disabled.
func TestInstallAgentUnit(t *testing.T) {
	root := t.TempDir()
	check := func() {
		t.Helper()
		bin := filepath.Join(root, agentBinary)
		st, err := os.Stat(bin)
		if err != nil || st.Mode().Perm() != 0o755 || st.Size() == 0 {
			t.Fatalf("agent binary %s: %v %v", bin, st, err)
		}
		self, _ := os.Stat("/proc/self/exe")
		if st.Size() != self.Size() {
			t.Errorf("agent binary is %d bytes, this one %d", st.Size(), self.Size())
		}
		unit, err := os.ReadFile(filepath.Join(root, unitDir, unitName))
		if err != nil || string(unit) != agentUnit() {
			t.Errorf("unit file: %v\n%s", err, unit)
		}
		link := filepath.Join(root, unitWants, unitName)
		if target, err := os.Readlink(link); err != nil || target != "../"+unitName {
			t.Errorf("enable symlink %s -> %q, %v", link, target, err)
		}
		if _, err := os.Stat(link); err != nil {
			t.Errorf("enable symlink does not resolve: %v", err)
		}
	}
	for i := 0; i < 2; i++ {
		if err := installAgentUnit(root); err != nil {
			t.Fatal(err)
		}
		check()
	}
	os.WriteFile(filepath.Join(root, unitDir, unitName), []byte("[Service]\nExecStart=/bin/false\n"), 0o644)
	os.Remove(filepath.Join(root, unitWants, unitName))
	if err := installAgentUnit(root); err != nil {
		t.Fatal(err)
	}
	check()
}
