package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"path/filepath"
	"sync"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/config"
	"github.com/openslicer/openslicer/internal/vmstate"
)

func open(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(path)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	return s
}

func alloc(t *testing.T, s *Store, group string) VM {
	t.Helper()
	rec, err := s.Allocate(group, config.HostGroup{Name: group}.Hostname, func(i int, name string) VM {
		return VM{Hostname: name, Group: group, Index: i, State: vmstate.Creating}
	})
	if err != nil {
		t.Fatalf("Allocate(%s): %v", group, err)
	}
	return rec
}

func TestAllocateNamesNeverRepeat(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s := open(t, path)
	a, b := alloc(t, s, "sbox"), alloc(t, s, "sbox")
	other := alloc(t, s, "ctrl")
	if a.Hostname != "sbox-1" || b.Hostname != "sbox-2" || other.Hostname != "ctrl-1" {
		t.Fatalf("names = %s %s %s, want sbox-1 sbox-2 ctrl-1", a.Hostname, b.Hostname, other.Hostname)
	}
	// A deleted name is not reused, across a reopen too.
	if err := s.Delete(b.Hostname); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open(t, path)
	defer s.Close()
	if c := alloc(t, s, "sbox"); c.Hostname != "sbox-3" {
		t.Fatalf("after restart got %s, want sbox-3", c.Hostname)
	}
}

func TestAllocateSkipsExistingRecords(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "state.db"))
	defer s.Close()
	if err := s.Put(VM{Hostname: "g-1", Group: "g", Index: 1}); err != nil {
		t.Fatal(err)
	}
	if got := alloc(t, s, "g"); got.Hostname != "g-2" {
		t.Fatalf("got %s, want g-2 (g-1 exists)", got.Hostname)
	}
}

func TestConcurrentAllocateDistinct(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "state.db"))
	defer s.Close()
	var mu sync.Mutex
	seen := map[string]bool{}
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rec := alloc(t, s, "g")
			mu.Lock()
			defer mu.Unlock()
			if seen[rec.Hostname] {
				t.Errorf("name %s allocated twice", rec.Hostname)
			}
			seen[rec.Hostname] = true
		}()
	}
	wg.Wait()
	if len(seen) != 20 {
		t.Fatalf("got %d names, want 20", len(seen))
	}
}

func TestGetPutListDelete(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "state.db"))
	defer s.Close()
	if _, err := s.Get("nope"); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("Get(nope) = %v, want ErrNotFound", err)
	}
	rec := alloc(t, s, "b")
	alloc(t, s, "a")
	rec.State, rec.Tags = vmstate.Running, []string{"x=1"}
	if err := s.Put(rec); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(rec.Hostname)
	if err != nil || got.State != vmstate.Running || len(got.Tags) != 1 {
		t.Fatalf("Get = %+v, %v", got, err)
	}
	list, err := s.List()
	if err != nil || len(list) != 2 || list[0].Group != "a" {
		t.Fatalf("List = %+v, %v; want a-1 first", list, err)
	}
	if err := s.Delete(rec.Hostname); err != nil {
		t.Fatal(err)
	}
	if list, _ := s.List(); len(list) != 1 {
		t.Fatalf("after delete List has %d records, want 1", len(list))
	}
}

func TestOpenLockedByAnother(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s := open(t, path)
	defer s.Close()
	if _, err := Open(path); err == nil {
		t.Fatal("second Open of the same file succeeded, want a lock error")
	}
}

// TestOldRecordsDecode: records written before states had a type (the
// state and restore_at_start fields as plain strings) load into the same
// states, and are written back byte for byte.
func TestOldRecordsDecode(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "state.db"))
	defer s.Close()
	old := map[string]string{
		"sbox-1": `{"hostname":"sbox-1","group":"sbox","index":1,"cpus":2,"ram_bytes":1073741824,"persistent":true,"state":"suspended","created_at":"2026-12-01T10:00:00Z","disk":"/d/sbox-1.img","run_dir":"/r/sbox-1","machine":{"backend":"qemu","pid":42,"run_dir":"/r/sbox-1"},"restore_at_start":"paused"}`,
		"sbox-2": `{"hostname":"sbox-2","group":"sbox","index":2,"cpus":2,"ram_bytes":1073741824,"state":"creating","created_at":"2026-12-01T10:00:00Z","disk":"/d/sbox-2.img","run_dir":"/r/sbox-2","unanswered":true}`,
		"sbox-3": `{"hostname":"sbox-3","group":"sbox","index":3,"cpus":2,"ram_bytes":1073741824,"persistent":true,"state":"stopped","created_at":"2026-12-01T10:00:00Z","disk":"/d/sbox-3.img","run_dir":"/r/sbox-3"}`,
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		for host, rec := range old {
			if err := tx.Bucket(bucketVMs).Put([]byte(host), []byte(rec)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][2]vmstate.State{
		"sbox-1": {vmstate.Suspended, vmstate.Paused},
		"sbox-2": {vmstate.Creating, ""},
		"sbox-3": {vmstate.Stopped, ""},
	}
	for host, w := range want {
		rec, err := s.Get(host)
		if err != nil {
			t.Fatalf("Get(%s): %v", host, err)
		}
		if rec.State != w[0] || rec.RestoreAtStart != w[1] || !rec.State.Stored() {
			t.Errorf("%s decodes as state %q restore_at_start %q, want %q %q", host, rec.State, rec.RestoreAtStart, w[0], w[1])
		}
		back, _ := json.Marshal(rec)
		if !bytes.Equal(back, []byte(old[host])) {
			t.Errorf("%s is written back as\n%s\nwant\n%s", host, back, old[host])
		}
	}
}

// TestRecordWithLiveDiskDecodes: a record an older daemon wrote with
// live_disk (the disk a machine started with before a memory commit moved
// it, a field no longer kept) loads, its other fields intact.
func TestRecordWithLiveDiskDecodes(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "state.db"))
	defer s.Close()
	old := `{"hostname":"sbox-1","group":"sbox","index":1,"cpus":2,"ram_bytes":1073741824,"persistent":true,"state":"running","created_at":"2026-12-01T10:00:00Z","disk":"/d/sbox-1.cmt-1.qcow2","disk_format":"qcow2","run_dir":"/r/sbox-1","commit_id":"cmt-1","disk_base":"cmt-1","live_disk":"/d/sbox-1.qcow2"}`
	err := s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketVMs).Put([]byte("sbox-1"), []byte(old)) })
	if err != nil {
		t.Fatal(err)
	}
	rec, err := s.Get("sbox-1")
	if err != nil {
		t.Fatal(err)
	}
	if rec.Disk != "/d/sbox-1.cmt-1.qcow2" || rec.DiskBase != "cmt-1" || rec.CommitID != "cmt-1" || rec.State != vmstate.Running {
		t.Errorf("record decodes as %+v", rec)
	}
	if recs, err := s.List(); err != nil || len(recs) != 1 {
		t.Errorf("List = %d records, %v", len(recs), err)
	}
}
