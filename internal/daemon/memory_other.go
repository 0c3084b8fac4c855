//go:build !linux

package daemon

// hostMemory is 0 off Linux: no default memory budget.
func hostMemory() int64 { return 0 }
