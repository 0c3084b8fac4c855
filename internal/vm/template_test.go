package vm

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/agent"
	"github.com/openslicer/openslicer/internal/config"
	"github.com/openslicer/openslicer/internal/store"
)

// TestTemplateKey: the key changes with what the template's guest boots
// from and with (image files, kernel arguments, size, backend), and not
// with what a create applies afterwards (count, userdata, persistence).
func TestTemplateKey(t *testing.T) {
	g := config.HostGroup{Name: "g", VCPU: 2, RamMB: 512}
	img := BootImage{Kernel: "/i/vmlinuz", Initrd: "/i/initrd", RootFS: "/i/rootfs.ext4", ImageID: "sha256:1"}
	base := templateKey(g, img, 1<<30, "qemu")
	same := func(edit func(*config.HostGroup)) string {
		g := g
		edit(&g)
		return templateKey(g, img, 1<<30, "qemu")
	}
	if k := same(func(g *config.HostGroup) { n := 3; g.Count, g.Userdata, g.Persistent = &n, "echo", true }); k != base {
		t.Error("the key changed with count, userdata or persistence")
	}
	for name, k := range map[string]string{
		"vcpu":        same(func(g *config.HostGroup) { g.VCPU = 1 }),
		"ram":         same(func(g *config.HostGroup) { g.RamMB = 1024 }),
		"kernel args": same(func(g *config.HostGroup) { g.KernelArgs = "debug" }),
		"init":        same(func(g *config.HostGroup) { g.Init = config.InitAgent }),
		"disk size":   templateKey(g, img, 2<<30, "qemu"),
		"backend":     templateKey(g, img, 1<<30, "firecracker"),
		"kernel":      templateKey(g, BootImage{Kernel: "/j/vmlinuz", Initrd: img.Initrd, RootFS: img.RootFS, ImageID: img.ImageID}, 1<<30, "qemu"),
		"root fs":     templateKey(g, BootImage{Kernel: img.Kernel, Initrd: img.Initrd, RootFS: "/j/rootfs.ext4", ImageID: img.ImageID}, 1<<30, "qemu"),
		"image id":    templateKey(g, BootImage{Kernel: img.Kernel, Initrd: img.Initrd, RootFS: img.RootFS, ImageID: "sha256:2"}, 1<<30, "qemu"),
	} {
		if k == base {
			t.Errorf("the key did not change with the %s", name)
		}
	}
}

// newTemplateEnv is a manager with layers and templates, one snapshot
// group "snap" (2 vcpus, 1 GiB) and one plain group "sbox".
func newTemplateEnv(t *testing.T) (*env, *forkGuests) {
	t.Helper()
	e, _, guests := newCommitEnv(t, []config.HostGroup{
		{Name: "snap", VCPU: 2, RamGB: 1, Snapshot: true},
		{Name: "sbox", VCPU: 2, RamGB: 1},
	}, nil)
	e.m.opt.Clone = qcow2Clone
	e.m.opt.TemplatesDir = filepath.Join(e.dir, "templates")
	return e, guests
}

// TestTemplateCreates: the first create of a snapshot group boots a
// template machine with a memory file, captures it and kills it; that
// create and the next restore from the template, over its disk layer,
// and each gets its own identity before the create returns; a create
// asking for a smaller size, and one of a plain group, boot cold.
func TestTemplateCreates(t *testing.T) {
	e, guests := newTemplateEnv(t)
	ctx := context.Background()
	var hosts []string
	for range 2 {
		resp, err := e.m.Create(ctx, "snap", api.CreateNodeRequest{}, CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		hosts = append(hosts, resp.Hostname)
	}
	tpls, err := e.store.ListTemplates()
	if err != nil || len(tpls) != 1 || tpls[0].State != store.TemplateReady {
		t.Fatalf("templates %+v, %v; want one ready", tpls, err)
	}
	tpl := tpls[0]
	src := e.fake.Last(tpl.Name)
	if src == nil || src.Spec.MemoryFile == "" || src.Spec.RestoreFrom != "" || isRunning(e, tpl.Name) {
		t.Errorf("template machine %+v: want one booted with a memory file, and killed", src)
	}
	if _, err := os.Stat(filepath.Join(tpl.StateDir, "manifest.json")); err != nil {
		t.Errorf("template state: %v", err)
	}
	for _, h := range hosts {
		m := e.fake.Last(h)
		if m == nil || m.Spec.RestoreFrom != tpl.StateDir || m.Spec.MemoryFile != "" {
			t.Errorf("%s: machine %+v, want it restored from %s", h, m, tpl.StateDir)
		}
		rec := e.record(t, h)
		if rec.Template != tpl.ID || rec.DiskFormat != "qcow2" {
			t.Errorf("%s: record template %q format %q, want %s qcow2", h, rec.Template, rec.DiskFormat, tpl.ID)
		}
		if disk, _ := os.ReadFile(rec.Disk); string(disk) != overlayContent(tpl.Layer) {
			t.Errorf("%s: disk %q, want an overlay over %s", h, disk, tpl.Layer)
		}
	}
	ids := guests.identityList()
	if len(ids) != 2 || ids[0].Hostname != hosts[0] || ids[1].Hostname != hosts[1] ||
		ids[0].MachineID == "" || ids[0].MachineID == ids[1].MachineID ||
		len(ids[0].Entropy) < agent.MinEntropy || bytes.Equal(ids[0].Entropy, ids[1].Entropy) {
		t.Errorf("identities given: %+v, want each clone its own name, machine-id and entropy", ids)
	}

	small, err := e.m.Create(ctx, "snap", api.CreateNodeRequest{CPUs: 1}, CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	plain, err := e.m.Create(ctx, "sbox", api.CreateNodeRequest{}, CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{small.Hostname, plain.Hostname} {
		if m := e.fake.Last(h); m == nil || m.Spec.RestoreFrom != "" || e.record(t, h).Template != "" {
			t.Errorf("%s: want a cold boot, got machine %+v", h, m)
		}
	}
	if n := len(guests.identityList()); n != 2 {
		t.Errorf("%d identities given after cold creates, want still 2", n)
	}
}

// TestTemplateRebuilt: a template whose key no longer matches (the
// group's size changed) is replaced on the next create, and removed once
// no VM's disk is over it.
func TestTemplateRebuilt(t *testing.T) {
	e, _ := newTemplateEnv(t)
	ctx := context.Background()
	first, err := e.m.Create(ctx, "snap", api.CreateNodeRequest{}, CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	old := e.record(t, first.Hostname).Template
	g := e.m.groups["snap"]
	g.RamGB = 2
	e.m.groups["snap"] = g
	second, err := e.m.Create(ctx, "snap", api.CreateNodeRequest{}, CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cur := e.record(t, second.Hostname).Template
	if cur == old || cur == "" {
		t.Fatalf("after a size change the create used template %q (old %q)", cur, old)
	}
	if _, err := e.store.GetTemplate(old); err != nil {
		t.Errorf("the old template, still under %s, was removed: %v", first.Hostname, err)
	}
	if _, err := e.m.Delete(ctx, "snap", first.Hostname); err != nil {
		t.Fatal(err)
	}
	e.m.dropStaleTemplates("snap", cur)
	if _, err := e.store.GetTemplate(old); err == nil {
		t.Error("the old template is kept with no VM over it")
	}
	if _, err := os.Stat(filepath.Join(e.m.opt.TemplatesDir, old)); !os.IsNotExist(err) {
		t.Errorf("the old template's directory: %v, want it gone", err)
	}
}

// TestTemplateRecover: at start, a template caught mid-capture (record
// writing) is removed with its directory and run dir, a directory no
// record names is removed, and a ready template is kept.
func TestTemplateRecover(t *testing.T) {
	e, _ := newTemplateEnv(t)
	ctx := context.Background()
	if _, err := e.m.Create(ctx, "snap", api.CreateNodeRequest{}, CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tpls, _ := e.store.ListTemplates()
	ready := tpls[0]
	cut := store.Template{ID: "tpl-000000000001", Group: "snap", State: store.TemplateWriting, Backend: e.fake.Name(),
		Dir: filepath.Join(e.m.opt.TemplatesDir, "tpl-000000000001"), RunDir: e.m.runDir("tpl-000000000001")}
	cut.Layer = filepath.Join(cut.Dir, "disk.img")
	for _, d := range []string{cut.Dir, cut.RunDir, filepath.Join(e.m.opt.TemplatesDir, "tpl-stray")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(cut.Layer, []byte("disk"), 0o644)
	if err := e.store.PutTemplate(cut); err != nil {
		t.Fatal(err)
	}
	if err := e.m.recoverTemplates(ctx); err != nil {
		t.Fatal(err)
	}
	tpls, _ = e.store.ListTemplates()
	if len(tpls) != 1 || tpls[0].ID != ready.ID {
		t.Errorf("templates after recovery %+v, want only %s", tpls, ready.ID)
	}
	ents, _ := os.ReadDir(e.m.opt.TemplatesDir)
	if len(ents) != 1 || ents[0].Name() != ready.ID {
		t.Errorf("template dirs after recovery %v, want only %s", ents, ready.ID)
	}
	if _, err := os.Stat(cut.RunDir); !os.IsNotExist(err) {
		t.Errorf("run dir of the template cut short: %v, want it gone", err)
	}
}

func isRunning(e *env, name string) bool {
	for _, m := range e.fake.Running() {
		if m.Spec.Name == name {
			return true
		}
	}
	return false
}

// TestPoolOfSnapshotGroup: a snapshot group's warm pool fills with
// template clones, each given its own identity at fill, and a create
// takes one.
func TestPoolOfSnapshotGroup(t *testing.T) {
	e, _, guests := newCommitEnv(t, []config.HostGroup{{Name: "sbox", VCPU: 2, RamGB: 1, Snapshot: true, Warm: 1}}, nil)
	e.m.opt.Clone = qcow2Clone
	e.m.opt.TemplatesDir = filepath.Join(e.dir, "templates")
	e.m.StartPools()
	waitPool(t, e.m, 1)
	tpls, err := e.store.ListTemplates()
	if err != nil || len(tpls) != 1 {
		t.Fatalf("templates %+v, %v; want one", tpls, err)
	}
	resp, err := e.m.Create(context.Background(), "sbox", api.CreateNodeRequest{}, CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rec := e.record(t, resp.Hostname)
	if rec.MachineName == "" || rec.Template != tpls[0].ID {
		t.Fatalf("%s: machine name %q template %q, want a pool vm cloned from %s", resp.Hostname, rec.MachineName, rec.Template, tpls[0].ID)
	}
	if m := e.fake.Last(rec.MachineName); m == nil || m.Spec.RestoreFrom != tpls[0].StateDir {
		t.Errorf("%s: machine %+v, want it restored from %s", rec.MachineName, m, tpls[0].StateDir)
	}
	ids := guests.identityList()
	if len(ids) < 2 || ids[0].Hostname != rec.MachineName || ids[0].MachineID == "" || len(ids[0].Entropy) == 0 || ids[len(ids)-1].Hostname != resp.Hostname {
		t.Errorf("identities given: %+v, want the clone's own (%s) at fill, then its node name %s", ids, rec.MachineName, resp.Hostname)
	}
}

// TestTemplateWithNetwork: the template machine of a group with a network
// has an unlinked NIC; each clone is restored with its own TAP and MAC,
// and is handed that MAC and its own address through the identity route.
func TestTemplateWithNetwork(t *testing.T) {
	groups := netGroups()
	groups[0].Snapshot = true // br
	e, _, guests := newCommitEnv(t, groups, &fakeNetwork{})
	e.m.opt.Clone = qcow2Clone
	e.m.opt.TemplatesDir = filepath.Join(e.dir, "templates")
	ctx := context.Background()
	macs := map[string]bool{}
	for range 2 {
		resp, err := e.m.Create(ctx, "br", api.CreateNodeRequest{}, CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		m := e.fake.Last(resp.Hostname)
		rec := e.record(t, resp.Hostname)
		if m.Spec.RestoreFrom == "" || m.Spec.TAP == "" || m.Spec.MAC == "" || macs[m.Spec.MAC] {
			t.Errorf("%s: machine spec %+v, want a restore with a TAP and a MAC of its own", resp.Hostname, m.Spec)
		}
		macs[m.Spec.MAC] = true
		ids := guests.identityList()
		id := ids[len(ids)-1]
		if id.Network == nil || id.Network.MAC != m.Spec.MAC || id.Network.Address.String() != rec.IP {
			t.Errorf("%s: identity network %+v, want MAC %s and address %s", resp.Hostname, id.Network, m.Spec.MAC, rec.IP)
		}
	}
	tpls, err := e.store.ListTemplates()
	if err != nil || len(tpls) != 1 {
		t.Fatalf("templates %+v, %v", tpls, err)
	}
	if src := e.fake.Last(tpls[0].Name); src == nil || !src.Spec.UnlinkedNIC || src.Spec.TAP != "" {
		t.Errorf("template machine %+v: want an unlinked NIC and no TAP", src)
	}
}
