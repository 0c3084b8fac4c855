package qemu

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/hypervisor"
)

func TestCheckMissingBinary(t *testing.T) {
	b := New(nil)
	b.Binary = filepath.Join(t.TempDir(), "qemu-system-x86_64")
	err := b.Check()
	if err == nil {
		t.Fatal("Check with a missing binary: got nil")
	}
	if !strings.Contains(err.Error(), "apt-get install qemu-system-x86") {
		t.Errorf("Check error %q does not name the fix", err)
	}
}

func TestName(t *testing.T) {
	if got := New(nil).Name(); got != "qemu" {
		t.Errorf("Name() = %q, want qemu", got)
	}
}

func TestAttachRejectsBadHandles(t *testing.T) {
	b := New(nil)
	for _, h := range []hypervisor.Handle{
		{Backend: "firecracker", PID: 1, RunDir: "/run/x"},
		{Backend: "qemu", PID: 1, RunDir: "run/x"},
	} {
		if _, err := b.Attach(context.Background(), h); !errors.Is(err, api.ErrInvalid) {
			t.Errorf("Attach(%+v) error = %v, want api.ErrInvalid", h, err)
		}
	}
}

func TestStartInvalidSpec(t *testing.T) {
	b := New(nil)
	spec := baseSpec()
	spec.VCPUs = 0
	spec.RunDir = filepath.Join(t.TempDir(), "run")
	if _, err := b.Start(context.Background(), spec); !errors.Is(err, api.ErrInvalid) {
		t.Errorf("Start with 0 vcpus error = %v, want api.ErrInvalid", err)
	}
}
