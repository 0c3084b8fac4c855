package store

import (
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/vmstate"
)

// Commit records round-trip (the nil and empty lists of a network
// override included), survive a reopen, list oldest first, and delete.
func TestCommitRecords(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s := open(t, path)
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	a := Commit{ID: "cmt-a", State: CommitReady, Mode: "disk", CreatedAt: t0.Add(time.Minute), Source: "sbox-1", Group: "sbox",
		Layer: "/data/commits/cmt-a/disk.qcow2", LayerFormat: "qcow2", CPUs: 1, RamBytes: 1 << 30,
		Network: &api.CreateNodeNetworkPolicy{Allow: []string{}}, Labels: map[string]string{"k": "v"}}
	b := Commit{ID: "cmt-b", State: CommitWriting, Mode: "disk", CreatedAt: t0, Source: "sbox-2", Group: "sbox"}
	for _, c := range []Commit{a, b} {
		if err := s.CreateCommit(c); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CreateCommit(a); !errors.Is(err, api.ErrAlreadyExists) {
		t.Errorf("second CreateCommit of one id = %v, want ErrAlreadyExists", err)
	}
	s.Close()
	s = open(t, path)
	defer s.Close()
	got, err := s.GetCommit("cmt-a")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(a, got); diff != "" {
		t.Errorf("commit after reopen (-want +got):\n%s", diff)
	}
	if got.Network.Allow == nil || got.Network.Drop != nil {
		t.Errorf("override lists %#v: want allow [] kept and drop nil", got.Network)
	}
	all, err := s.ListCommits()
	if err != nil || len(all) != 2 || all[0].ID != "cmt-b" || all[1].ID != "cmt-a" {
		t.Fatalf("ListCommits = %+v, %v; want b then a", all, err)
	}
	if _, err := s.GetCommit("cmt-x"); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("GetCommit of a missing id = %v, want ErrNotFound", err)
	}
	if err := s.DeleteCommit("cmt-b"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteCommit("cmt-b"); err != nil {
		t.Errorf("deleting a missing commit: %v", err)
	}
	if all, _ := s.ListCommits(); len(all) != 1 {
		t.Errorf("after delete: %+v", all)
	}
}

// A cache key belongs to one commit: any other commit claiming it is
// refused, naming the holder, however many try at once.
func TestCommitCacheKeyUnique(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "state.db"))
	defer s.Close()
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() {
			errs[i] = s.CreateCommit(Commit{ID: "cmt-" + string(rune('a'+i)), State: CommitWriting, CacheKey: "k"})
		})
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, api.ErrConflict):
			t.Errorf("CreateCommit = %v, want ErrConflict", err)
		}
	}
	if won != 1 {
		t.Fatalf("%d commits took cache key k, want 1", won)
	}
	if err := s.CreateCommit(Commit{ID: "cmt-other", CacheKey: "k2"}); err != nil {
		t.Errorf("another key: %v", err)
	}
	if err := s.CreateCommit(Commit{ID: "cmt-nokey"}); err != nil {
		t.Errorf("no key: %v", err)
	}
	if err := s.CreateCommit(Commit{ID: "cmt-nokey2"}); err != nil {
		t.Errorf("a second commit without a key: %v", err)
	}
}

// FinishCommit writes the commit and its source's record together.
func TestFinishCommit(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "state.db"))
	defer s.Close()
	vm := alloc(t, s, "sbox")
	c := Commit{ID: "cmt-a", State: CommitWriting, Source: vm.Hostname}
	if err := s.CreateCommit(c); err != nil {
		t.Fatal(err)
	}
	c.State, vm.CommitID, vm.DiskBase, vm.State = CommitReady, "cmt-a", "cmt-a", vmstate.Stopped
	if err := s.FinishCommit(c, vm); err != nil {
		t.Fatal(err)
	}
	gotC, _ := s.GetCommit("cmt-a")
	gotV, _ := s.Get(vm.Hostname)
	if gotC.State != CommitReady || gotV.CommitID != "cmt-a" || gotV.DiskBase != "cmt-a" {
		t.Errorf("after FinishCommit: commit %+v, vm %+v", gotC, gotV)
	}
}
