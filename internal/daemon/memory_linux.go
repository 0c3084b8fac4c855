package daemon

import (
	"syscall"
)

// hostMemory is the host's total memory in bytes; 0 when it cannot be
// read (no budget then).
func hostMemory() int64 {
	var si syscall.Sysinfo_t
	if err := syscall.Sysinfo(&si); err != nil {
		return 0
	}
	return int64(si.Totalram) * int64(si.Unit)
}
