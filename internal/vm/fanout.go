package vm

import (
	"errors"
	"sync"
)

// allAtOnce calls fn for every item, all at once, and returns when every
// call has: the errors joined, in the items' order.
func allAtOnce[T any](items []T, fn func(T) error) error {
	errs := make([]error, len(items))
	var wg sync.WaitGroup
	for i, item := range items {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = fn(item)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
