package vm

import (
	"strings"
	"testing"
)

func TestKernelCmdline(t *testing.T) {
	got := KernelCmdline("sbox-3")
	for _, want := range []string{"console=ttyS0", "panic=-1", "slicer.hostname=sbox-3"} {
		if !strings.Contains(" "+got+" ", " "+want+" ") {
			t.Errorf("KernelCmdline = %q, missing %q", got, want)
		}
	}
}
