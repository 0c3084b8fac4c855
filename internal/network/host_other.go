//go:build !linux

package network

import (
	"context"
	"errors"

	"github.com/openslicer/openslicer/internal/config"
)

var errNotLinux = errors.New("VM networking needs Linux")

// Host applies plans; on this platform every operation fails.
type Host struct{}

// New fails: networking needs Linux.
func New(opt Options) (*Host, error) { return nil, errNotLinux }

// Close does nothing.
func (h *Host) Close() error { return nil }

// Setup fails: networking needs Linux.
func (h *Host) Setup(ctx context.Context, p Plan) (Attachment, error) {
	return Attachment{}, errNotLinux
}

// Teardown fails: networking needs Linux.
func (h *Host) Teardown(ctx context.Context, p Plan) error { return errNotLinux }

// Reclaim fails: networking needs Linux.
func (h *Host) Reclaim(ctx context.Context, keepVM, keepGroup func(string) bool) error {
	return errNotLinux
}

// TeardownGroup fails: networking needs Linux.
func (h *Host) TeardownGroup(ctx context.Context, group string) error { return errNotLinux }

// CheckHost passes a config without networks and fails any other.
func (h *Host) CheckHost(ctx context.Context, groups []config.HostGroup) error {
	for _, g := range groups {
		if g.Network != nil {
			return errNotLinux
		}
	}
	return nil
}

// InNetNS calls fn when path is empty and fails otherwise.
func InNetNS(path string, fn func() error) error {
	if path == "" {
		return fn()
	}
	return errNotLinux
}
