package vm

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/config"
	"github.com/openslicer/openslicer/internal/network"
	"github.com/openslicer/openslicer/internal/store"
)

func list(s ...string) *[]string { return &s }

// planFork: sizes within the group's limits (400 past them), tag modes,
// secrets (nil inherits, [] none, a list replaces), fix-ups (nil all, []
// none, unknown 400) and network overrides (isolated groups only).
func TestPlanFork(t *testing.T) {
	g := config.HostGroup{Name: "sbox", VCPU: 2, RamGB: 2}
	iso := config.HostGroup{Name: "iso", VCPU: 2, RamGB: 2, Network: &config.Network{Mode: network.ModeIsolated}}
	bridge := config.HostGroup{Name: "br", VCPU: 2, RamGB: 2, Network: &config.Network{Mode: network.ModeBridge}}
	c := store.Commit{ID: "cmt-1", Source: "sbox-1", Group: "sbox", CPUs: 1, RamBytes: 1 << 30,
		VMTags: []string{"role=api"}, Secrets: []string{"db"}}
	cNet := c
	cNet.Network = &api.CreateNodeNetworkPolicy{Allow: []string{"10.1.0.0/16"}, Drop: []string{"0.0.0.0/0"}}
	base := forkSpec{CPUs: 1, RamBytes: 1 << 30, Tags: []string{"role=api"}, Secrets: []string{"db"}, Fixups: api.AllFixups}
	with := func(f func(*forkSpec)) forkSpec { s := base; f(&s); return s }
	for _, tc := range []struct {
		name string
		c    store.Commit
		g    config.HostGroup
		req  api.ForkVMRequest
		want forkSpec
		bad  string // a word the ErrInvalid names
	}{
		{name: "defaults: the source's", c: c, g: g, want: base},
		{name: "smaller", c: c, g: g, req: api.ForkVMRequest{VCPU: 2, RamBytes: 512 << 20},
			want: with(func(s *forkSpec) { s.CPUs, s.RamBytes = 2, 512<<20 })},
		{name: "vcpu over the group", c: c, g: g, req: api.ForkVMRequest{VCPU: 3}, bad: "limit of 2"},
		{name: "ram over the group", c: c, g: g, req: api.ForkVMRequest{RamBytes: 3 << 30}, bad: "ram_bytes"},
		{name: "ram under 64 MiB", c: c, g: g, req: api.ForkVMRequest{RamBytes: 1 << 20}, bad: "minimum"},
		{name: "negative vcpu", c: c, g: g, req: api.ForkVMRequest{VCPU: -1}, bad: "negative"},
		{name: "append tags", c: c, g: g, req: api.ForkVMRequest{Tags: []string{"job=1", "role=api"}},
			want: with(func(s *forkSpec) { s.Tags = []string{"role=api", "job=1"} })},
		{name: "replace tags", c: c, g: g, req: api.ForkVMRequest{Tags: []string{"job=1"}, TagMode: "replace"},
			want: with(func(s *forkSpec) { s.Tags = []string{"job=1"} })},
		{name: "replace with none", c: c, g: g, req: api.ForkVMRequest{TagMode: "replace"},
			want: with(func(s *forkSpec) { s.Tags = nil })},
		{name: "bad tag mode", c: c, g: g, req: api.ForkVMRequest{TagMode: "merge"}, bad: "tag_mode"},
		{name: "no secrets", c: c, g: g, req: api.ForkVMRequest{Secrets: list()},
			want: with(func(s *forkSpec) { s.Secrets, s.NoSecrets = nil, true })},
		{name: "other secrets", c: c, g: g, req: api.ForkVMRequest{Secrets: list("b", "a", "b")},
			want: with(func(s *forkSpec) { s.Secrets = []string{"a", "b"} })},
		{name: "no fixups", c: c, g: g, req: api.ForkVMRequest{Fixups: list()},
			want: with(func(s *forkSpec) { s.Fixups, s.GuestHostname = nil, "sbox-1" })},
		{name: "machine-id only", c: c, g: g, req: api.ForkVMRequest{Fixups: list("machine-id")},
			want: with(func(s *forkSpec) { s.Fixups, s.GuestHostname = []string{"machine-id"}, "sbox-1" })},
		{name: "unknown fixup", c: c, g: g, req: api.ForkVMRequest{Fixups: list("kernel")}, bad: "fixup"},
		{name: "persistent", c: c, g: g, req: api.ForkVMRequest{Persistent: true},
			want: with(func(s *forkSpec) { s.Persistent = true })},
		{name: "override without a network", c: c, g: g, req: api.ForkVMRequest{Network: &api.ForkVMNetworkPolicy{Allow: list()}}, bad: "isolated"},
		{name: "override in a bridge group", c: c, g: bridge, req: api.ForkVMRequest{Network: &api.ForkVMNetworkPolicy{Drop: list("10.0.0.0/8")}}, bad: "bridge mode"},
		{name: "empty override in a bridge group", c: c, g: bridge, req: api.ForkVMRequest{Network: &api.ForkVMNetworkPolicy{}}, want: base},
		{name: "inherit the source's override", c: cNet, g: iso,
			want: with(func(s *forkSpec) { s.Network = cNet.Network })},
		{name: "clear allow, inherit drop", c: cNet, g: iso, req: api.ForkVMRequest{Network: &api.ForkVMNetworkPolicy{Allow: list()}},
			want: with(func(s *forkSpec) {
				s.Network = &api.CreateNodeNetworkPolicy{Allow: []string{}, Drop: []string{"0.0.0.0/0"}}
			})},
		{name: "override without one before", c: c, g: iso, req: api.ForkVMRequest{Network: &api.ForkVMNetworkPolicy{Drop: list("10.0.0.0/8")}},
			want: with(func(s *forkSpec) { s.Network = &api.CreateNodeNetworkPolicy{Drop: []string{"10.0.0.0/8"}} })},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := planFork(tc.c, tc.g, tc.req)
			if tc.bad != "" {
				if !errors.Is(err, api.ErrInvalid) || !strings.Contains(err.Error(), tc.bad) {
					t.Fatalf("planFork = %v, want ErrInvalid naming %q", err, tc.bad)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("planFork (-want +got):\n%s", diff)
			}
		})
	}
}

// The fix-up script does what each fix-up names, and nothing for none.
func TestFixupScript(t *testing.T) {
	if s := fixupScript(nil, "sbox-1", "sbox-2"); s != "" {
		t.Errorf("no fixups: script %q, want none", s)
	}
	all := fixupScript(api.AllFixups, "sbox-1", "sbox-2")
	for _, want := range []string{"set -e", "old='sbox-1'", "new='sbox-2'", "/etc/hosts", "ssh-keygen -A", "rm -f /etc/ssh/ssh_host_*", "sync"} {
		if !strings.Contains(all, want) {
			t.Errorf("script lacks %q:\n%s", want, all)
		}
	}
	if strings.Contains(all, "machine-id") {
		t.Errorf("script writes the machine id, which the identity route does:\n%s", all)
	}
	// The machine id goes through the agent: nothing to exec for it.
	if only := fixupScript([]string{api.FixupMachineID}, "sbox-1", "sbox-2"); only != "" {
		t.Errorf("machine-id only: script %q, want none", only)
	}
}

// A fork makes the next <group>-N VM over the commit's layer, with the
// source's shape and tags (and its own), records its parent commit, and
// runs the fix-ups before it answers; fixups [] runs none and leaves the
// guest the source's hostname.
func TestForkChild(t *testing.T) {
	e, _, guests := newCommitEnv(t, nil, nil)
	e.m.opt.Clone = qcow2Clone
	ctx := context.Background()
	src := e.stoppedVM(t, "sbox", api.CreateNodeRequest{CPUs: 1, Tags: []string{"name=base", "role=api"}})
	c, err := e.m.Commit(ctx, src, api.CommitVMRequest{})
	if err != nil {
		t.Fatal(err)
	}
	commit, _ := e.store.GetCommit(c.CommitID)
	var answered []api.ForkVMResponse
	resp, err := e.m.Fork(ctx, c.CommitID, api.ForkVMRequest{Tags: []string{"job=1"}}, ForkOptions{
		Answer: func(r api.ForkVMResponse, commit func() error) error { answered = append(answered, r); return commit() },
	})
	if err != nil {
		t.Fatal(err)
	}
	want := api.ForkVMResponse{Hostname: "sbox-2", SourceHostname: src, CommitID: c.CommitID, Status: "forked",
		ParentStatus: "stopped", ChildStatus: "running", Mode: "disk"}
	if diff := cmp.Diff(want, resp); diff != "" || len(answered) != 1 {
		t.Errorf("fork response (-want +got):\n%s (answered %d times)", diff, len(answered))
	}
	rec := e.record(t, resp.Hostname)
	if rec.ParentCommit != c.CommitID || rec.DiskBase != c.CommitID || rec.CPUs != 1 || rec.Unfinished || rec.Unanswered ||
		rec.GuestHostname != "" || !slices.Equal(rec.Tags, []string{"role=api", "job=1"}) || rec.DiskFormat != "qcow2" {
		t.Errorf("child record %+v", rec)
	}
	if disk, _ := os.ReadFile(rec.Disk); string(disk) != overlayContent(commit.Layer) {
		t.Errorf("child disk %q, want an overlay over %s", disk, commit.Layer)
	}
	d, err := e.m.Describe(resp.Hostname)
	if err != nil || d.ParentCommitID != c.CommitID {
		t.Errorf("describe of the child: parent_commit_id %q, %v", d.ParentCommitID, err)
	}
	execs := guests.execList()
	if len(execs) != 1 || !strings.Contains(execs[0], "ssh-keygen") || !strings.Contains(execs[0], "'"+src+"'") {
		t.Errorf("fix-ups run: %q", execs)
	}
	if ids := guests.machineIDList(); len(ids) != 1 || len(ids[0]) != 32 {
		t.Errorf("machine ids sent through the identity route: %q, want one new one", ids)
	}
	if m := e.fake.Last(resp.Hostname); m == nil || !strings.Contains(m.Spec.Cmdline, "slicer.hostname=sbox-2") {
		t.Errorf("child boots with cmdline %v, want its own name", m)
	}

	bare, err := e.m.Fork(ctx, c.CommitID, api.ForkVMRequest{Fixups: list(), TagMode: "replace"}, ForkOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(guests.execList()); n != 1 {
		t.Errorf("fork with fixups [] ran %d more execs, want none", n-1)
	}
	if n := len(guests.machineIDList()); n != 1 {
		t.Errorf("fork with fixups [] sent %d more machine ids, want none", n-1)
	}
	// A guest without SSH host keys is spared the fix-up's exec.
	guests.mu.Lock()
	guests.noSSHKeys = true
	guests.mu.Unlock()
	if _, err := e.m.Fork(ctx, c.CommitID, api.ForkVMRequest{Fixups: list(api.FixupSSHHostKeys)}, ForkOptions{}); err != nil {
		t.Fatal(err)
	}
	if n := len(guests.execList()); n != 1 {
		t.Errorf("fork of a guest without SSH host keys ran %d more execs, want none", n-1)
	}
	brec := e.record(t, bare.Hostname)
	if m := e.fake.Last(bare.Hostname); m == nil || GuestCmdline(src, "", "", "") != m.Spec.Cmdline {
		t.Errorf("child without the hostname fix-up boots with %+v, want the source's name", m)
	}
	if len(brec.Tags) != 0 {
		t.Errorf("replace with no tags gave %q", brec.Tags)
	}

	for _, tc := range []struct {
		id   string
		req  api.ForkVMRequest
		want error
	}{
		{"cmt-none", api.ForkVMRequest{}, api.ErrNotFound},
		{"../etc", api.ForkVMRequest{}, api.ErrInvalid},
		{c.CommitID, api.ForkVMRequest{VCPU: 9}, api.ErrInvalid},
		{c.CommitID, api.ForkVMRequest{Tags: []string{"name=base"}}, api.ErrConflict}, // the source's name
	} {
		if _, err := e.m.Fork(ctx, tc.id, tc.req, ForkOptions{}); !errors.Is(err, tc.want) {
			t.Errorf("fork %s with %+v = %v, want %v", tc.id, tc.req, err, tc.want)
		}
	}
	if recs, _ := e.store.List(); len(recs) != 4 {
		t.Errorf("%d records after refused forks, want the source and three children", len(recs))
	}
}

// A fork's secrets: none named inherits the source's grants, [] grants
// none, a list replaces them; an unknown one is 400.
func TestForkSecrets(t *testing.T) {
	e, agents, _ := newSecretsEnv(t)
	e.m.opt.Layers, e.m.opt.CommitsDir = &fakeLayers{}, e.dir+"/commits"
	guests := &forkGuests{}
	e.fake.Agent = guests.serve
	_ = agents
	ctx := context.Background()
	src := e.stoppedVM(t, "sbox", api.CreateNodeRequest{Secrets: []string{"db"}})
	c, err := e.m.Commit(ctx, src, api.CommitVMRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		secrets *[]string
		want    []string
	}{
		{nil, []string{"db"}},
		{list(), []string{}},
		{list("api-key"), []string{"api-key"}},
	} {
		resp, err := e.m.Fork(ctx, c.CommitID, api.ForkVMRequest{Secrets: tc.secrets}, ForkOptions{})
		if err != nil {
			t.Fatal(err)
		}
		in, _ := e.m.get(resp.Hostname)
		files, err := e.m.vmSecrets(in)
		if err != nil {
			t.Fatal(err)
		}
		var got []string = []string{}
		for _, f := range files {
			got = append(got, f.Name)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("fork with secrets %v gets %q, want %q", tc.secrets, got, tc.want)
		}
	}
	if _, err := e.m.Fork(ctx, c.CommitID, api.ForkVMRequest{Secrets: list("nope")}, ForkOptions{}); !errors.Is(err, api.ErrInvalid) {
		t.Errorf("fork with an unknown secret = %v, want ErrInvalid", err)
	}
}

// In an isolated group a fork inherits its source's egress override, and
// its own lists replace the ones they name; describe shows the override.
func TestForkNetworkOverride(t *testing.T) {
	e, _, _ := newCommitEnv(t, netGroups(), &fakeNetwork{})
	ctx := context.Background()
	src := e.stoppedVM(t, "iso", api.CreateNodeRequest{Network: &api.CreateNodeNetworkPolicy{Allow: []string{"203.0.113.2"}}})
	c, err := e.m.Commit(ctx, src, api.CommitVMRequest{})
	if err != nil {
		t.Fatal(err)
	}
	inherit, err := e.m.Fork(ctx, c.CommitID, api.ForkVMRequest{}, ForkOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d, _ := e.m.Describe(inherit.Hostname)
	if d.Network.Override == nil || !slices.Equal(d.Network.Override.Allow, []string{"203.0.113.2"}) {
		t.Errorf("inheriting fork describes override %+v", d.Network.Override)
	}
	cleared, err := e.m.Fork(ctx, c.CommitID, api.ForkVMRequest{Network: &api.ForkVMNetworkPolicy{Allow: list()}}, ForkOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d, _ = e.m.Describe(cleared.Hostname)
	if d.Network.Override == nil || d.Network.Override.Allow == nil || len(d.Network.Override.Allow) != 0 ||
		len(d.Network.Effective.Allow) != 0 || !slices.Equal(d.Network.Effective.Drop, []string{"10.0.0.0/8"}) {
		t.Errorf("fork with allow [] describes %+v", d.Network)
	}
	if _, err := e.m.Fork(ctx, c.CommitID, api.ForkVMRequest{Network: &api.ForkVMNetworkPolicy{Drop: list("not-a-cidr")}}, ForkOptions{}); !errors.Is(err, api.ErrInvalid) {
		t.Errorf("fork with a bad drop = %v, want ErrInvalid", err)
	}

	// A bridge group's commit: overrides are 400, inheriting works.
	br := e.stoppedVM(t, "br", api.CreateNodeRequest{})
	bc, err := e.m.Commit(ctx, br, api.CommitVMRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.Fork(ctx, bc.CommitID, api.ForkVMRequest{Network: &api.ForkVMNetworkPolicy{Allow: list()}}, ForkOptions{}); !errors.Is(err, api.ErrInvalid) || !strings.Contains(err.Error(), "isolated") {
		t.Errorf("override on a bridge fork = %v, want ErrInvalid naming isolated", err)
	}
	if resp, err := e.m.Fork(ctx, bc.CommitID, api.ForkVMRequest{}, ForkOptions{}); err != nil || !strings.HasPrefix(resp.Hostname, "br-") {
		t.Errorf("bridge fork = %+v, %v", resp, err)
	}
}

// wait=none answers once the child starts; its fix-ups run after. When
// they fail the child is removed; with wait=agent the fork fails and
// leaves nothing.
func TestForkFinalisation(t *testing.T) {
	e, _, guests := newCommitEnv(t, nil, nil)
	ctx := context.Background()
	src := e.stoppedVM(t, "sbox", api.CreateNodeRequest{})
	c, err := e.m.Commit(ctx, src, api.CommitVMRequest{})
	if err != nil {
		t.Fatal(err)
	}
	ok, err := e.m.Fork(ctx, c.CommitID, api.ForkVMRequest{}, ForkOptions{NoWait: true})
	if err != nil || ok.ChildStatus != "starting" {
		t.Fatalf("fork wait=none = %+v, %v", ok, err)
	}
	waitFor(t, func() bool { rec, err := e.store.Get(ok.Hostname); return err == nil && !rec.Unfinished })

	guests.mu.Lock()
	guests.exitCode = 1
	guests.mu.Unlock()
	_, err = e.m.Fork(ctx, c.CommitID, api.ForkVMRequest{}, ForkOptions{})
	if err == nil || !strings.Contains(err.Error(), "ssh-keygen: not found") {
		t.Errorf("fork with failing fix-ups = %v, want their error", err)
	}
	bad, err := e.m.Fork(ctx, c.CommitID, api.ForkVMRequest{}, ForkOptions{NoWait: true})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { _, err := e.m.get(bad.Hostname); return err != nil })
	if e.hasDisk(bad.Hostname) {
		t.Errorf("child whose finalisation failed kept its disk")
	}
	nodes, _ := e.m.List(Filter{})
	if len(nodes) != 2 {
		t.Errorf("vms after failed forks: %+v, want the source and the first child", nodes)
	}
	for _, h := range []string{src, ok.Hostname} {
		if _, err := e.m.Delete(ctx, "sbox", h); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.m.DeleteCommit(ctx, c.CommitID); err != nil {
		t.Fatal(err)
	}
	e.assertEmpty(t)
}
