package guest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/openslicer/openslicer/api"
)

// TestSetClock checks that the host's time reaches the agent's setter, and
// that an agent without one (not init) refuses instead of touching the
// clock of the machine it runs on.
func TestSetClock(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	if err := h.client.SetClock(ctx, time.Now()); !errors.Is(err, api.ErrNotImplemented) {
		t.Fatalf("SetClock on an agent that is not init = %v, want ErrNotImplemented", err)
	}

	set := make(chan time.Time, 1)
	h.srv.setClock = func(t time.Time) error { set <- t; return nil }
	want := time.Date(2031, 5, 6, 7, 8, 9, 123456789, time.UTC)
	if err := h.client.SetClock(ctx, want); err != nil {
		t.Fatalf("SetClock: %v", err)
	}
	if got := <-set; !got.Equal(want) {
		t.Errorf("setter got %v, want %v", got, want)
	}
}
