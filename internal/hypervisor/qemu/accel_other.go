//go:build !linux

package qemu

import (
	"context"
	"errors"
	"time"
)

// kvmHost reports that KVM exists only on Linux.
func kvmHost(dev, modules string) KVMHost {
	return KVMHost{OpenErr: errors.New("KVM exists only on Linux")}
}

// runBootProbe is never reached off Linux: the checks fail first.
func runBootProbe(ctx context.Context, binary, kernel string, accel Accel, timeout time.Duration) BootProbe {
	return BootProbe{Why: "KVM exists only on Linux"}
}

// identify does not know file identities off Linux: nothing is memoized.
func identify(path string) (fileID, bool) { return fileID{}, false }
