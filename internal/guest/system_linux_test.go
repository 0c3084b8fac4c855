package guest

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"testing"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/agent"
	"github.com/openslicer/openslicer/internal/guest/sysconf"
)

// TestSetIdentity: an agent that is not init refuses (a development agent
// never renames its host); init's setter gets the request as checked; a
// bad request is 400 and never reaches the setter.
func TestSetIdentity(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	req := agent.Identity{Hostname: "sbox-9", Entropy: bytes.Repeat([]byte{1}, agent.MinEntropy),
		Network: &agent.Network{Address: netip.MustParsePrefix("10.0.0.9/24"), Gateway: netip.MustParseAddr("10.0.0.1")}}
	if err := h.client.SetIdentity(ctx, req); !errors.Is(err, api.ErrNotImplemented) {
		t.Fatalf("SetIdentity on an agent that is not init = %v, want ErrNotImplemented", err)
	}

	got := make(chan sysconf.Identity, 2)
	h.srv.setIdentity = func(id sysconf.Identity) error { got <- id; return nil }
	if err := h.client.SetIdentity(ctx, req); err != nil {
		t.Fatalf("SetIdentity: %v", err)
	}
	id := <-got
	if id.Hostname != "sbox-9" || id.Network == nil || id.Network.Address != req.Network.Address ||
		id.Network.Gateway != req.Network.Gateway || !bytes.Equal(id.Entropy, req.Entropy) {
		t.Errorf("setter got %+v, want the request's identity", id)
	}
	if err := h.client.SetIdentity(ctx, agent.Identity{Hostname: "bad_name"}); !errors.Is(err, api.ErrInvalid) {
		t.Errorf("SetIdentity of a bad hostname = %v, want ErrInvalid", err)
	}
	select {
	case id := <-got:
		t.Errorf("a refused identity reached the setter: %+v", id)
	default:
	}
}

// TestPower: the agent answers before it acts (the setter runs after the
// host has its answer), refuses what is not poweroff or reboot, and an
// agent that is not init refuses rather than stopping its machine.
func TestPower(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	if err := h.client.Power(ctx, agent.PowerOff); !errors.Is(err, api.ErrNotImplemented) {
		t.Fatalf("Power on an agent that is not init = %v, want ErrNotImplemented", err)
	}
	answered := make(chan struct{})
	acted := make(chan string, 2)
	h.srv.doPower = func(action string) error {
		<-answered // blocks until the client has its answer: it came first
		acted <- action
		return nil
	}
	for _, action := range []string{agent.PowerOff, agent.Reboot} {
		if err := h.client.Power(ctx, action); err != nil {
			t.Fatalf("Power %s: %v", action, err)
		}
		answered <- struct{}{}
		if got := <-acted; got != action {
			t.Errorf("power setter got %q, want %q", got, action)
		}
	}
	if err := h.client.Power(ctx, "halt"); !errors.Is(err, api.ErrInvalid) {
		t.Errorf("Power halt = %v, want ErrInvalid (from the client, before asking)", err)
	}
}
