package vm

import (
	"fmt"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/config"
	"github.com/openslicer/openslicer/internal/store"
)

// checkStorage refuses groups whose storage this daemon cannot provide.
// The config accepts devmapper and zfs (Slicer's keys) so a config stays
// portable; a create in such a group is 501, naming what is missing.
func checkStorage(g config.HostGroup) error {
	switch g.Storage {
	case "devmapper":
		return fmt.Errorf("host group %q: storage devmapper needs a device-mapper thin pool driven through containerd's devmapper snapshotter, which this daemon does not support yet; use storage: image (copy-on-write qcow2 or reflink disks): %w", g.Name, api.ErrNotImplemented)
	case "zfs":
		return fmt.Errorf("host group %q: storage zfs needs a ZFS pool and zvol snapshots, which this daemon does not support yet; use storage: image (copy-on-write qcow2 or reflink disks): %w", g.Name, api.ErrNotImplemented)
	}
	return nil
}

// diskFormat is the format of a VM's disk as recorded when it was made;
// records from before formats were kept are raw.
func diskFormat(rec store.VM) string {
	if rec.DiskFormat == "" {
		return "raw"
	}
	return rec.DiskFormat
}
