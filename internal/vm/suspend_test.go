package vm

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/hypervisor"
	"github.com/openslicer/openslicer/internal/hypervisor/hypervisortest"
)

// A suspend writes a state directory whose manifest records the VM's
// machine; a restore consumes it, and a delete removes a partial one.
func TestSuspendWritesStateDirectory(t *testing.T) {
	e := newEnv(t, &hypervisortest.Fake{})
	ctx := context.Background()
	if _, err := e.m.Create(ctx, "sbox", api.CreateNodeRequest{Persistent: true, CPUs: 1}, CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := e.m.Suspend(ctx, "sbox-1"); err != nil {
		t.Fatal(err)
	}
	dir := e.m.statePath("sbox-1")
	man, err := hypervisor.ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	rec := e.record(t, "sbox-1")
	want := hypervisor.Shape{VCPUs: 1, MemoryBytes: rec.RamBytes, Disks: []hypervisor.Disk{{Path: rec.Disk, Format: "raw"}}}
	if man.Backend != "fake" || man.Machine.VCPUs != want.VCPUs || man.Machine.MemoryBytes != want.MemoryBytes ||
		!reflect.DeepEqual(man.Machine.Disks, want.Disks) {
		t.Errorf("manifest %+v, want backend fake and machine %+v", man, want)
	}
	if err := e.m.Restore(ctx, "sbox-1", CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state directory kept after restore (stat error %v)", err)
	}

	// A save cut short by a crash leaves a partial directory beside.
	if _, err := hypervisor.CreateState(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.Delete(ctx, "sbox", "sbox-1"); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(filepath.Dir(dir)); len(entries) != 0 {
		t.Errorf("left in the disks dir after delete: %v", entries)
	}
}
