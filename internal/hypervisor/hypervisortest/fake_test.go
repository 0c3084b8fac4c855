package hypervisortest

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/openslicer/openslicer/internal/hypervisor"
)

// The fake is held to the suite every backend passes.
func TestFakeConformance(t *testing.T) {
	host := &Host{}
	Run(t, func(t *testing.T) hypervisor.Backend { return &Fake{Host: host, Guest: KVGuest} }, FakeGuest{})
}

// A fake whose guest ignores the power button passes too.
func TestFakeIgnoringShutdownConformance(t *testing.T) {
	host := &Host{}
	Run(t, func(t *testing.T) hypervisor.Backend {
		return &Fake{Host: host, Guest: KVGuest, IgnoreShutdown: true}
	}, ignoringGuest{})
}

type ignoringGuest struct{ FakeGuest }

func (ignoringGuest) HonoursPowerButton() bool { return false }

func TestFakeSuspendErr(t *testing.T) {
	f := &Fake{SuspendErr: hypervisor.ErrUnsupported}
	m, err := f.Start(context.Background(), FakeGuest{}.Spec(t))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "s")
	if err := m.Suspend(context.Background(), dir); !errors.Is(err, hypervisor.ErrUnsupported) {
		t.Errorf("Suspend error = %v, want hypervisor.ErrUnsupported", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed Suspend left %s (stat error %v)", dir, err)
	}
	if !isOpen(m.Done()) {
		t.Error("a failed Suspend ended the machine")
	}
}

// Without an agent or a guest, a connection is left unanswered, like a
// guest that never boots, and closes when the machine ends.
func TestFakeSilentGuest(t *testing.T) {
	m, err := (&Fake{}).Start(context.Background(), FakeGuest{}.Spec(t))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := m.DialAgent(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	m.Kill(context.Background())
	if _, err := conn.Read(make([]byte, 1)); err == nil {
		t.Error("the agent connection of a killed machine still reads")
	}
	var _ net.Conn = conn
}
