package store

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/vmstate"
)

// A pool record becomes a node in one step: the next <group>-N name is
// allocated, the pool record is gone, and pool names never repeat.
func TestPoolAllocateAndTake(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s := open(t, path)
	alloc(t, s, "sbox") // sbox-1
	pool := func() VM {
		rec, err := s.AllocatePool("sbox", func(k int, name string) VM {
			return VM{Hostname: name, Group: "sbox", State: vmstate.Pooled, Disk: "/d/" + name + ".img"}
		})
		if err != nil {
			t.Fatal(err)
		}
		return rec
	}
	a, b := pool(), pool()
	if a.Hostname != "sbox-w1" || b.Hostname != "sbox-w2" {
		t.Fatalf("pool names %s %s", a.Hostname, b.Hostname)
	}
	got, err := s.Take(a.Hostname, func(index int, hostname string, pooled VM) VM {
		pooled.Hostname, pooled.Index, pooled.MachineName, pooled.State = hostname, index, pooled.Hostname, vmstate.Running
		return pooled
	})
	if err != nil {
		t.Fatal(err)
	}
	if got.Hostname != "sbox-2" || got.MachineName != "sbox-w1" || got.Disk != "/d/sbox-w1.img" {
		t.Fatalf("taken = %+v", got)
	}
	if _, err := s.Get("sbox-w1"); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("pool record still there: %v", err)
	}
	if _, err := s.Take("sbox-w1", func(int, string, VM) VM { return VM{} }); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("second take of one pool vm: %v", err)
	}
	s.Close()
	s = open(t, path)
	defer s.Close()
	if c := pool(); c.Hostname != "sbox-w3" {
		t.Fatalf("pool name after reopen %s, want sbox-w3", c.Hostname)
	}
	if n := alloc(t, s, "sbox"); n.Hostname != "sbox-3" {
		t.Fatalf("node after take %s, want sbox-3", n.Hostname)
	}
}
