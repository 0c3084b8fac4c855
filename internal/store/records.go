package store

import (
	"encoding/json"
	"fmt"

	"github.com/openslicer/openslicer/api"
	bolt "go.etcd.io/bbolt"
)

// getRecord reads the JSON record at key of bucket into a T; a missing one
// is an error wrapping api.ErrNotFound that names it as what (e.g. "vm").
func getRecord[T any](db *bolt.DB, bucket []byte, what, key string) (T, error) {
	var rec T
	err := db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucket).Get([]byte(key))
		if v == nil {
			return fmt.Errorf("%s %q: %w", what, key, api.ErrNotFound)
		}
		return json.Unmarshal(v, &rec)
	})
	return rec, err
}

// listRecords reads every JSON record of bucket, in key order; what (e.g.
// "vms") names them in an error.
func listRecords[T any](db *bolt.DB, bucket []byte, what string) ([]T, error) {
	var out []T
	err := db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucket).ForEach(func(_, v []byte) error {
			var rec T
			if err := json.Unmarshal(v, &rec); err != nil {
				return err
			}
			out = append(out, rec)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", what, err)
	}
	return out, nil
}
