package vm

import (
	"strings"
	"testing"
)

func TestKernelCmdline(t *testing.T) {
	got := KernelCmdline("sbox-3", "")
	for _, want := range []string{"console=ttyS0", "panic=-1", "slicer.hostname=sbox-3"} {
		if !strings.Contains(" "+got+" ", " "+want+" ") {
			t.Errorf("KernelCmdline = %q, missing %q", got, want)
		}
	}
	if strings.HasSuffix(got, " ") {
		t.Errorf("KernelCmdline without extra args = %q, ends in a space", got)
	}
}

// A group's kernel_args come after the daemon's, so the kernel, which
// takes the last of repeated arguments, lets them override the defaults.
func TestKernelCmdlineExtraLast(t *testing.T) {
	got := KernelCmdline("sbox-3", "  console=ttyS1 panic=0 ")
	if !strings.HasSuffix(got, "slicer.hostname=sbox-3 console=ttyS1 panic=0") {
		t.Errorf("KernelCmdline with kernel_args = %q, want them last, trimmed", got)
	}
}
