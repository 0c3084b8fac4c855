// Package store keeps the daemon's state in one bbolt file, written before
// the side effects it records so that a crash at any point can be reconciled
// on the next start.
//
// Bucket layout (schema version 1):
//
//	meta/
//	  version          -> "1"
//	vms/
//	  <hostname>       -> JSON VM record
//	counters/
//	  <host group>     -> last allocated index, decimal
//	  <host group>/pool -> last allocated warm pool index (pool.go)
//	commits/
//	  <commit id>      -> JSON Commit record (commits.go)
//	templates/
//	  <template id>    -> JSON Template record (templates.go)
//
// Names are allocated from the per-group counter, which only ever grows, so
// a name is never handed out twice, across restarts included. The store
// counts; what the n-th VM of a group is called is the config's rule
// (config.HostGroup.Hostname), which the caller hands to Allocate.
package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/openslicer/openslicer/internal/vmstate"
)

// SchemaVersion is the layout this package reads and writes.
const SchemaVersion = 1

var (
	bucketMeta     = []byte("meta")
	bucketVMs      = []byte("vms")
	bucketCounters = []byte("counters")
	bucketCommits  = []byte("commits")
	bucketTemplate = []byte("templates")
	keyVersion     = []byte("version")
)

// VM is the persistent record of one VM.
type VM struct {
	Hostname   string   `json:"hostname"`
	Group      string   `json:"group"`
	Index      int      `json:"index"`
	CPUs       int      `json:"cpus"`
	RamBytes   int64    `json:"ram_bytes"`
	Tags       []string `json:"tags,omitempty"`
	Persistent bool     `json:"persistent,omitempty"`
	Protected  bool     `json:"protected,omitempty"`
	Userdata   string   `json:"userdata,omitempty"`
	SSHKeys    []string `json:"ssh_keys,omitempty"`
	Secrets    []string `json:"secrets,omitempty"` // names of the secrets the VM gets; none: all
	// State is recorded as the state's string value ("running"); a
	// record is written in vmstate.Creating before any resource exists,
	// so recovery knows to reclaim whatever was made.
	State      vmstate.State   `json:"state"`
	CreatedAt  time.Time       `json:"created_at"`
	Disk       string          `json:"disk"`
	DiskFormat string          `json:"disk_format,omitempty"` // "raw" when empty
	RunDir     string          `json:"run_dir"`
	IP         string          `json:"ip,omitempty"`
	Machine    json.RawMessage `json:"machine,omitempty"`
	// Backend names the hypervisor backend that runs the VM (the config's
	// hypervisor when it was created): only that one re-attaches,
	// reclaims, relaunches or restores it. Empty in records written
	// before it was kept; the machine handle's backend, else the daemon's
	// own, then stands in.
	Backend string `json:"backend,omitempty"`
	// Unanswered marks a VM whose create has not been answered yet: the
	// next daemon reclaims it, as it does a record caught in
	// vmstate.Creating, since no client knows of it.
	Unanswered bool `json:"unanswered,omitempty"`
	// RestoreAtStart is set on a VM the daemon suspended as it stopped
	// (slicer up --suspend-on-shutdown) to the state it had, running or
	// paused: the next start restores it to that state.
	RestoreAtStart vmstate.State `json:"restore_at_start,omitempty"`

	// Commits and forks (commits.go).
	//
	// CommitID is the latest commit taken of this VM; DiskBase is the
	// commit whose layer the VM's disk is copy-on-write over (its latest
	// commit, or for a fork the commit it was forked from until it is
	// committed itself); ParentCommit is the commit a fork was made from.
	CommitID     string `json:"commit_id,omitempty"`
	DiskBase     string `json:"disk_base,omitempty"`
	ParentCommit string `json:"parent_commit,omitempty"`
	// (An older daemon wrote live_disk, the file a machine had started
	// with before a memory commit moved it: it is no longer needed, the
	// backend asking the machine for its disks, and is ignored.)
	// NoSecrets marks a VM granted no secrets at all (a fork asked for
	// "secrets": []), which an empty Secrets cannot say: it means all.
	NoSecrets bool `json:"no_secrets,omitempty"`
	// GuestHostname, when set, is the name the guest is given instead of
	// Hostname: a fork without the hostname fix-up keeps its source's.
	GuestHostname string `json:"guest_hostname,omitempty"`
	// Unfinished marks a fork whose finalisation (its agent up, its
	// fix-ups applied) is not done: the next daemon reclaims it, as the
	// fork would have, had finalisation failed.
	Unfinished bool `json:"unfinished,omitempty"`
	// Template is the snapshot template the VM was restored from, whose
	// disk layer its disk is copy-on-write over (templates.go).
	Template string `json:"template,omitempty"`

	// MachineName, when set, names the VM's host-side objects instead of
	// Hostname: its console log, network plan and network devices, state
	// directory, and (through Disk and RunDir) its disk and run
	// directory. A VM taken from a warm pool keeps the name it was
	// booted under ("<group>-wK"), since its machine holds those open.
	MachineName string `json:"machine_name,omitempty"`
	// Pool marks a warm pool VM that is not a node yet (its Hostname is
	// its pool name, "<group>-wK"). Pool VMs are never persistent, so
	// the next daemon reclaims them.
	Pool bool `json:"pool,omitempty"`
}

// Store is an open state file.
type Store struct {
	db *bolt.DB
}

// Open opens (creating if needed) the state file at path.
func Open(path string) (*Store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("open state %s: locked by another daemon", path)
		}
		return nil, fmt.Errorf("open state %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketMeta, bucketVMs, bucketCounters, bucketCommits, bucketTemplate} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		switch v := string(meta.Get(keyVersion)); v {
		case "":
			return meta.Put(keyVersion, []byte(strconv.Itoa(SchemaVersion)))
		case strconv.Itoa(SchemaVersion):
			return nil
		default:
			return fmt.Errorf("state schema version %s is not supported (want %d)", v, SchemaVersion)
		}
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open state %s: %w", path, err)
	}
	return &Store{db: db}, nil
}

// Close closes the file.
func (s *Store) Close() error { return s.db.Close() }

// Allocate allocates the next name in group and writes the record that
// build returns for it, in one transaction. name is the group's naming
// rule: the hostname of its index-th VM. An index whose name a record
// holds already is skipped.
func (s *Store) Allocate(group string, name func(index int) string, build func(index int, hostname string) VM) (VM, error) {
	var rec VM
	err := s.db.Update(func(tx *bolt.Tx) error {
		counters, vms := tx.Bucket(bucketCounters), tx.Bucket(bucketVMs)
		n, _ := strconv.Atoi(string(counters.Get([]byte(group))))
		for {
			n++
			host := name(n)
			if vms.Get([]byte(host)) == nil {
				rec = build(n, host)
				break
			}
		}
		if err := counters.Put([]byte(group), []byte(strconv.Itoa(n))); err != nil {
			return err
		}
		return putVM(vms, rec)
	})
	if err != nil {
		return VM{}, fmt.Errorf("allocate vm in %q: %w", group, err)
	}
	return rec, nil
}

// Put writes rec, replacing any record with the same hostname.
func (s *Store) Put(rec VM) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		return putVM(tx.Bucket(bucketVMs), rec)
	})
	if err != nil {
		return fmt.Errorf("write vm %q: %w", rec.Hostname, err)
	}
	return nil
}

// Get returns the record of hostname, or an error wrapping api.ErrNotFound.
func (s *Store) Get(hostname string) (VM, error) {
	return getRecord[VM](s.db, bucketVMs, "vm", hostname)
}

// Delete removes the record of hostname; a missing record is not an error.
func (s *Store) Delete(hostname string) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketVMs).Delete([]byte(hostname))
	})
	if err != nil {
		return fmt.Errorf("delete vm %q: %w", hostname, err)
	}
	return nil
}

// List returns every record, ordered by group then index.
func (s *Store) List() ([]VM, error) {
	out, err := listRecords[VM](s.db, bucketVMs, "vms")
	if err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Group != out[j].Group {
			return out[i].Group < out[j].Group
		}
		return out[i].Index < out[j].Index
	})
	return out, nil
}

func putVM(b *bolt.Bucket, rec VM) error {
	data, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return b.Put([]byte(rec.Hostname), data)
}
