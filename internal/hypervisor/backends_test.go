package hypervisor

import (
	"errors"
	"strings"
	"testing"
)

type named string

func (n named) Name() string { return string(n) }

func TestBackends(t *testing.T) {
	a, b := &stubBackend{named: "qemu"}, &stubBackend{named: "firecracker"}
	set := NewBackends(a, nil, b, &stubBackend{named: "qemu"})
	if got, err := set.Get("qemu"); err != nil || got != a {
		t.Errorf("Get(qemu) = %v, %v; want the first qemu", got, err)
	}
	_, err := set.Get("cloud-hypervisor")
	if !errors.Is(err, ErrUnknownBackend) || !strings.Contains(err.Error(), "[firecracker qemu]") {
		t.Errorf("Get(unknown) error = %v, want ErrUnknownBackend naming the ones there are", err)
	}
}

// stubBackend is a Backend that only has a name.
type stubBackend struct {
	Backend
	named
}

func (s *stubBackend) Name() string { return s.named.Name() }
