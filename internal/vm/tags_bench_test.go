package vm

import (
	"fmt"
	"testing"

	"github.com/openslicer/openslicer/api"
)

// BenchmarkApplyTagUpdate computes an update that adds n tags to a VM with
// n tags, past the limits (the update is then refused): the time should
// grow linearly with n. Figures: docs/benchmarks.md.
func BenchmarkApplyTagUpdate(b *testing.B) {
	for _, n := range []int{1_000, 10_000, 100_000} {
		current, add := make([]string, n), make([]string, n)
		for i := range n {
			current[i], add[i] = fmt.Sprintf("c%d", i), fmt.Sprintf("a%d", i)
		}
		b.Run(fmt.Sprintf("tags=%d", n), func(b *testing.B) {
			for range b.N {
				applyTagUpdate(current, api.VMTagUpdate{Add: add, Remove: add[:n/2]})
			}
		})
	}
}
