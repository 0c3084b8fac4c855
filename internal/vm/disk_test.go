package vm

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/config"
	"github.com/openslicer/openslicer/internal/hypervisor/hypervisortest"
)

// recordingImages remembers the names it resolved.
type recordingImages struct {
	dir   string
	mu    sync.Mutex
	names []string
}

func (r *recordingImages) Resolve(ctx context.Context, name string) (BootImage, error) {
	r.mu.Lock()
	r.names = append(r.names, name)
	r.mu.Unlock()
	return BootImage{Kernel: "vmlinuz", Initrd: "initrd", RootFS: filepath.Join(r.dir, "rootfs")}, nil
}

func TestDiskFormatFlowsFromCloneToSpec(t *testing.T) {
	fake := &hypervisortest.Fake{}
	e := newEnvWith(t, fake, []config.HostGroup{
		{Name: "sbox", VCPU: 2, RamGB: 1},
		{Name: "py", VCPU: 2, RamGB: 1, Image: "python:3.12-slim"},
	}, nil)
	imgs := &recordingImages{dir: e.dir}
	e.m.opt.Images = imgs
	e.m.opt.Clone = func(ctx context.Context, src, dst string, size int64) (string, error) {
		return "qcow2", os.WriteFile(dst, []byte("QFI\xfb"), 0o644)
	}
	ctx := context.Background()
	if _, err := e.m.Create(ctx, "py", api.CreateNodeRequest{Persistent: true}, CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.Create(ctx, "sbox", api.CreateNodeRequest{}, CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := imgs.names; len(got) != 2 || got[0] != "python:3.12-slim" || got[1] != "min" {
		t.Fatalf("resolved images %v, want the group's own, then the top-level one", got)
	}
	specFormat := func() string {
		for _, m := range fake.Running() {
			if m.Spec.Name == "py-1" {
				return m.Spec.Disks[0].Format
			}
		}
		return ""
	}
	if f := specFormat(); f != "qcow2" {
		t.Fatalf("spec disk format %q, want the clone's qcow2", f)
	}
	// A relaunch boots the same disk in the format recorded at create,
	// without cloning again.
	e.m.opt.Clone = func(context.Context, string, string, int64) (string, error) {
		return "", errors.New("a relaunch must not clone")
	}
	for _, m := range fake.Running() {
		if m.Spec.Name == "py-1" {
			m.Exit()
		}
	}
	waitFor(t, func() bool {
		n, _ := e.m.List(Filter{})
		return len(n) == 2 && (n[0].Status == api.StatusStopped || n[1].Status == api.StatusStopped)
	})
	if _, err := e.m.Relaunch(ctx, "py-1", CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if f := specFormat(); f != "qcow2" {
		t.Fatalf("relaunched disk format %q, want qcow2", f)
	}
}

func TestStorageWithoutBackendIsNotImplemented(t *testing.T) {
	e := newEnvWith(t, &hypervisortest.Fake{}, []config.HostGroup{
		{Name: "dm", VCPU: 1, RamGB: 1, Storage: "devmapper"},
		{Name: "zfs", VCPU: 1, RamGB: 1, Storage: "zfs"},
	}, nil)
	for _, g := range []string{"dm", "zfs"} {
		_, err := e.m.Create(context.Background(), g, api.CreateNodeRequest{}, CreateOptions{})
		if !errors.Is(err, api.ErrNotImplemented) {
			t.Errorf("create in %s: %v, want ErrNotImplemented", g, err)
		}
	}
	e.assertEmpty(t)
}
