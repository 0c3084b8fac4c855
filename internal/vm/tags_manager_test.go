package vm

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/hypervisor/hypervisortest"
)

// TestConcurrentTagUpdates: updates of one VM that run at once all land
// (none is lost while another is being computed), are written to the
// store, and two VMs that claim the same name at once do not both get it.
func TestConcurrentTagUpdates(t *testing.T) {
	e := newEnv(t, &hypervisortest.Fake{})
	ctx := context.Background()
	for range 2 {
		if _, err := e.m.Create(ctx, "sbox", api.CreateNodeRequest{}, CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	const n = 50
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if _, err := e.m.UpdateTags(ctx, "sbox-1", api.VMTagUpdate{Add: []string{fmt.Sprintf("t%d", i)}}); err != nil {
				t.Errorf("UpdateTags: %v", err)
			}
		})
		wg.Go(func() {
			if _, err := e.m.List(Filter{}); err != nil {
				t.Errorf("List: %v", err)
			}
		})
	}
	wg.Wait()
	tags, err := e.m.Tags("sbox-1")
	if err != nil {
		t.Fatal(err)
	}
	rec, err := e.store.Get("sbox-1")
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		want := fmt.Sprintf("t%d", i)
		if !slices.Contains(tags.Tags, want) || !slices.Contains(rec.Tags, want) {
			t.Errorf("tag %s lost: table %v, store %v", want, tags.Tags, rec.Tags)
		}
	}

	errs := make(chan error, 2)
	for _, host := range []string{"sbox-1", "sbox-2"} {
		wg.Go(func() {
			_, err := e.m.UpdateTags(ctx, host, api.VMTagUpdate{Name: sp("web")})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	var won, conflicts int
	for err := range errs {
		switch {
		case err == nil:
			won++
		case errors.Is(err, api.ErrConflict):
			conflicts++
		default:
			t.Errorf("UpdateTags(name=web) = %v", err)
		}
	}
	if won != 1 || conflicts != 1 {
		t.Errorf("two VMs claimed name=web at once: %d got it, %d conflicts; want 1 and 1", won, conflicts)
	}
}
