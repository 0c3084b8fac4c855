package qemu

import (
	"testing"

	"github.com/openslicer/openslicer/internal/hypervisor"
	"github.com/openslicer/openslicer/internal/hypervisor/hypervisortest"
	"github.com/openslicer/openslicer/internal/hypervisor/hypervisortest/agentguest"
)

// TestQEMUConformance holds the QEMU backend to the suite every backend
// passes, with the min image SLICER_TEST_KERNEL names as its guest (under
// KVM or TCG, as the host decides or SLICER_ACCEL says).
func TestQEMUConformance(t *testing.T) {
	requireQEMU(t)
	guest := leakCheckedGuest{agentguest.FromEnv(t)}
	guest.Log = testLogger(t)
	hypervisortest.Run(t, func(t *testing.T) hypervisor.Backend { return New(testLogger(t)) }, guest)
}

// leakCheckedGuest fails the test when a qemu process of one of its
// machines' run dirs outlives the test.
type leakCheckedGuest struct{ agentguest.Guest }

func (g leakCheckedGuest) Spec(t *testing.T) hypervisor.Spec {
	spec := g.Guest.Spec(t)
	t.Cleanup(func() {
		if pids := processesIn(spec.RunDir); len(pids) > 0 {
			t.Errorf("qemu processes %v left for %s", pids, spec.RunDir)
			killStrays(spec.RunDir)
		}
	})
	return spec
}
