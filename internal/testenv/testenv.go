// Package testenv gates tests that need more than a laptop: root, QEMU, or
// the end-to-end VM suite. Each gate skips with the reason.
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// RequireRoot skips t unless running as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
}

// RequireQEMU skips t unless qemu-system-x86_64 is installed.
func RequireQEMU(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("needs qemu-system-x86_64 (apt-get install qemu-system-x86)")
	}
}

// RequireFullSuite skips t unless SLICER_E2E=1 (set by `make test`): for
// slow tests such as building the guest image from Debian packages.
func RequireFullSuite(t testing.TB) {
	t.Helper()
	if os.Getenv("SLICER_E2E") != "1" {
		t.Skip("slow test (downloads Debian packages or boots VMs): set SLICER_E2E=1 (make test does)")
	}
}

// RequireE2E skips t unless the full suite is on and QEMU is installed:
// end-to-end tests boot real VMs.
func RequireE2E(t testing.TB) {
	t.Helper()
	RequireFullSuite(t)
	RequireQEMU(t)
}
