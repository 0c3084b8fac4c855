//go:build !linux

package qemu

import (
	"context"
	"fmt"

	"github.com/openslicer/openslicer/internal/hypervisor"
)

// start needs pidfds, which only Linux has.
func (b *Backend) start(ctx context.Context, runDir string, args []string, restore bool) (hypervisor.Machine, error) {
	return nil, fmt.Errorf("qemu machines run only on linux: %w", hypervisor.ErrUnsupported)
}

// attach needs pidfds, which only Linux has.
func (b *Backend) attach(ctx context.Context, h hypervisor.Handle) (hypervisor.Machine, error) {
	return nil, fmt.Errorf("qemu machines run only on linux: %w", hypervisor.ErrUnsupported)
}

// reclaim has nothing to find where qemu machines cannot run.
func reclaim(ctx context.Context, runDir string) error { return nil }
