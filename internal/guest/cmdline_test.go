package guest

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestKernelParam(t *testing.T) {
	tests := []struct {
		cmdline, key, want string
		found              bool
	}{
		{"console=ttyS0 slicer.hostname=vm-1 quiet\n", hostnameParam, "vm-1", true},
		{"slicer.hostname=a slicer.hostname=b", hostnameParam, "b", true},
		{"slicer.hostname= quiet", hostnameParam, "", true},
		{"xslicer.hostname=a slicer.hostnamex=b", hostnameParam, "", false},
		{"quiet slicer.hostname", hostnameParam, "", false},
		{"", hostnameParam, "", false},
	}
	for _, tt := range tests {
		got, found := kernelParam(tt.cmdline, tt.key)
		if got != tt.want || found != tt.found {
			t.Errorf("kernelParam(%q, %q) = %q, %v; want %q, %v", tt.cmdline, tt.key, got, found, tt.want, tt.found)
		}
	}
}

func TestParseLoadOrder(t *testing.T) {
	in := "/lib/modules/virtio_ring.ko\n\n# comment\n  /lib/modules/virtio.ko  \n/lib/modules/virtio_mmio.ko"
	want := []string{"/lib/modules/virtio_ring.ko", "/lib/modules/virtio.ko", "/lib/modules/virtio_mmio.ko"}
	if diff := cmp.Diff(want, parseLoadOrder(in)); diff != "" {
		t.Errorf("parseLoadOrder (-want +got):\n%s", diff)
	}
}
