package pid1

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseLoadOrder(t *testing.T) {
	in := "/lib/modules/virtio_ring.ko\n\n# comment\n  /lib/modules/virtio.ko  \n/lib/modules/virtio_mmio.ko"
	want := []string{"/lib/modules/virtio_ring.ko", "/lib/modules/virtio.ko", "/lib/modules/virtio_mmio.ko"}
	if diff := cmp.Diff(want, parseLoadOrder(in)); diff != "" {
		t.Errorf("parseLoadOrder (-want +got):\n%s", diff)
	}
}
