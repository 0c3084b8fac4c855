package store

import (
	"encoding/json"
	"fmt"
	"strconv"

	bolt "go.etcd.io/bbolt"

	"github.com/openslicer/openslicer/api"
)

// Warm pools. A pool VM's record is keyed by its pool name "<group>-wK",
// from its own counter, which never goes back either; a node's name
// "<group>-N" is given only when the VM is taken (Take), in the same
// transaction that removes the pool record, so a crash leaves it under
// exactly one of the two names.

// poolCounter is the counter key of group's pool names; "/" is never in
// a group name.
func poolCounter(group string) []byte { return []byte(group + "/pool") }

// PoolName is the name of group's k-th pool VM.
func PoolName(group string, k int) string { return fmt.Sprintf("%s-w%d", group, k) }

// AllocatePool allocates the next pool name of group and writes the
// record build returns for it, in one transaction.
func (s *Store) AllocatePool(group string, build func(k int, name string) VM) (VM, error) {
	var rec VM
	err := s.db.Update(func(tx *bolt.Tx) error {
		counters, vms := tx.Bucket(bucketCounters), tx.Bucket(bucketVMs)
		k, _ := strconv.Atoi(string(counters.Get(poolCounter(group))))
		for {
			k++
			if name := PoolName(group, k); vms.Get([]byte(name)) == nil {
				rec = build(k, name)
				break
			}
		}
		if err := counters.Put(poolCounter(group), []byte(strconv.Itoa(k))); err != nil {
			return err
		}
		return putVM(vms, rec)
	})
	if err != nil {
		return VM{}, fmt.Errorf("allocate pool vm in %q: %w", group, err)
	}
	return rec, nil
}

// Take turns the pool record poolName into a node of its group: the next
// name "<group>-N" is allocated, and the record build returns for it
// (given the pool record) replaces the pool record, in one transaction. A
// missing pool record is api.ErrNotFound.
func (s *Store) Take(poolName string, build func(index int, hostname string, pooled VM) VM) (VM, error) {
	var rec VM
	err := s.db.Update(func(tx *bolt.Tx) error {
		counters, vms := tx.Bucket(bucketCounters), tx.Bucket(bucketVMs)
		data := vms.Get([]byte(poolName))
		if data == nil {
			return fmt.Errorf("pool vm %q: %w", poolName, api.ErrNotFound)
		}
		var pooled VM
		if err := json.Unmarshal(data, &pooled); err != nil {
			return err
		}
		n, _ := strconv.Atoi(string(counters.Get([]byte(pooled.Group))))
		for {
			n++
			name := fmt.Sprintf("%s-%d", pooled.Group, n)
			if vms.Get([]byte(name)) == nil {
				rec = build(n, name, pooled)
				break
			}
		}
		if err := counters.Put([]byte(pooled.Group), []byte(strconv.Itoa(n))); err != nil {
			return err
		}
		if err := vms.Delete([]byte(poolName)); err != nil {
			return err
		}
		return putVM(vms, rec)
	})
	if err != nil {
		return VM{}, fmt.Errorf("take pool vm %q: %w", poolName, err)
	}
	return rec, nil
}
