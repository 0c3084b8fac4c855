package hypervisortest

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/openslicer/openslicer/internal/hypervisor"
)

func TestFakeSuspendRestore(t *testing.T) {
	ctx := context.Background()
	f := &Fake{}
	spec := hypervisor.Spec{Name: "vm-1", RunDir: t.TempDir()}
	m, err := f.Start(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(t.TempDir(), "vm.state")
	if err := m.Suspend(ctx, state); err != nil {
		t.Fatalf("Suspend: %v", err)
	}
	select {
	case <-m.Done():
	default:
		t.Fatal("Done open after Suspend")
	}

	spec.Incoming = filepath.Join(t.TempDir(), "missing.state")
	if _, err := f.Start(ctx, spec); err == nil {
		t.Error("Start from a missing state file succeeded")
	}
	spec.Incoming = state
	if _, err := f.Start(ctx, spec); err != nil {
		t.Errorf("Start from the state file: %v", err)
	}
}

func TestFakeSuspendErr(t *testing.T) {
	f := &Fake{SuspendErr: hypervisor.ErrUnsupported}
	m, err := f.Start(context.Background(), hypervisor.Spec{RunDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Suspend(context.Background(), filepath.Join(t.TempDir(), "s")); !errors.Is(err, hypervisor.ErrUnsupported) {
		t.Errorf("Suspend error = %v, want hypervisor.ErrUnsupported", err)
	}
}
