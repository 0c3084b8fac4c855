package vm

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/hypervisor/hypervisortest"
	"github.com/openslicer/openslicer/internal/store"
)

// A commit of a stopped persistent VM makes a read-only layer, records the
// commit ready and the VM's latest commit, and leaves the VM stopped and
// able to boot again. A VM that is running, or ephemeral, or unknown, is
// refused, naming why, and leaves nothing.
func TestCommitRules(t *testing.T) {
	e, layers, _ := newCommitEnv(t, nil, nil)
	ctx := context.Background()

	if _, err := e.m.Commit(ctx, "sbox-9", api.CommitVMRequest{}); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("commit of an unknown vm = %v, want ErrNotFound", err)
	}
	running := mustCreate(t, e.m, api.CreateNodeRequest{Persistent: true})
	_, err := e.m.Commit(ctx, running, api.CommitVMRequest{})
	conflictNaming(t, "commit of a running vm", err, running, "it is Running", "stopped")
	ephemeral := mustCreate(t, e.m, api.CreateNodeRequest{})
	_, err = e.m.Commit(ctx, ephemeral, api.CommitVMRequest{})
	conflictNaming(t, "commit of an ephemeral vm", err, "it is Running")
	for _, req := range []api.CommitVMRequest{
		{Tags: []string{""}},
		{Labels: map[string]string{"": "x"}},
		{CacheKey: strings.Repeat("k", api.MaxTagBytes+1)},
	} {
		if _, err := e.m.Commit(ctx, running, req); !errors.Is(err, api.ErrInvalid) {
			t.Errorf("commit with %+v = %v, want ErrInvalid", req, err)
		}
	}
	if cs, _ := e.store.ListCommits(); len(cs) != 0 || len(e.commitDirs()) != 0 {
		t.Fatalf("refused commits left records %+v or directories %v", cs, e.commitDirs())
	}

	src := e.stoppedVM(t, "sbox", api.CreateNodeRequest{Tags: []string{"name=web", "role=api"}})
	resp, err := e.m.Commit(ctx, src, api.CommitVMRequest{Tags: []string{"v1"}, Labels: map[string]string{"k": "v"}, CacheKey: "  key-1 "})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Hostname != src || !strings.HasPrefix(resp.CommitID, "cmt-") || resp.Status != "committed" || resp.ParentStatus != "stopped" ||
		resp.Mode != "disk" || resp.CacheKey != "key-1" || len(resp.Tags) != 1 || resp.Labels["k"] != "v" {
		t.Errorf("commit response %+v", resp)
	}
	if api.CheckCommitID(resp.CommitID) != nil {
		t.Errorf("commit id %q is not a valid id", resp.CommitID)
	}
	c, err := e.store.GetCommit(resp.CommitID)
	if err != nil || c.State != store.CommitReady || c.Source != src || c.Group != "sbox" {
		t.Fatalf("commit record %+v, %v", c, err)
	}
	if len(c.VMTags) != 1 || c.VMTags[0] != "role=api" {
		t.Errorf("commit keeps the vm's tags %q, want [role=api] (a name is one vm's)", c.VMTags)
	}
	if st, err := os.Stat(c.Layer); err != nil || st.Mode().Perm()&0o222 != 0 {
		t.Errorf("layer %s: %v, mode %v; want a read-only file", c.Layer, err, st.Mode())
	}
	if rec := e.record(t, src); rec.CommitID != resp.CommitID || rec.State != "stopped" {
		t.Errorf("source record after commit: commit %q state %s", rec.CommitID, rec.State)
	}
	if d, _ := e.m.Describe(src); d.CommitID != resp.CommitID || d.ParentCommitID != "" {
		t.Errorf("describe of the source: commit_id %q parent_commit_id %q", d.CommitID, d.ParentCommitID)
	}
	if len(layers.frozen) != 1 {
		t.Errorf("%d layers made, want 1", len(layers.frozen))
	}
	if _, err := e.m.Relaunch(ctx, src, CreateOptions{}); err != nil {
		t.Fatalf("relaunch after commit: %v", err)
	}
}

// Without disk layers the daemon answers commits and forks 501.
func TestCommitsWithoutLayers(t *testing.T) {
	e := newEnv(t, &hypervisortest.Fake{})
	src := e.stoppedVM(t, "sbox", api.CreateNodeRequest{})
	if _, err := e.m.Commit(context.Background(), src, api.CommitVMRequest{}); !errors.Is(err, api.ErrNotImplemented) {
		t.Errorf("commit = %v, want ErrNotImplemented", err)
	}
	if _, err := e.m.Fork(context.Background(), "cmt-x", api.ForkVMRequest{}, ForkOptions{}); !errors.Is(err, api.ErrNotImplemented) {
		t.Errorf("fork = %v, want ErrNotImplemented", err)
	}
}

// Commits claiming one cache key take turns: while one is making its
// layer, another with the same key waits, then is refused naming the
// first; a commit with another key goes ahead meanwhile. A key whose
// commit failed is free for the next.
func TestCommitCacheKeySerialised(t *testing.T) {
	e, layers, _ := newCommitEnv(t, nil, nil)
	ctx := context.Background()
	a, b, c := e.stoppedVM(t, "sbox", api.CreateNodeRequest{}), e.stoppedVM(t, "sbox", api.CreateNodeRequest{}), e.stoppedVM(t, "sbox", api.CreateNodeRequest{})

	layers.mu.Lock()
	layers.hold = make(chan struct{})
	hold := layers.hold
	layers.mu.Unlock()
	type result struct {
		resp api.CommitVMResponse
		err  error
	}
	first, second, other := make(chan result, 1), make(chan result, 1), make(chan result, 1)
	go func() { r, err := e.m.Commit(ctx, a, api.CommitVMRequest{CacheKey: "k"}); first <- result{r, err} }()
	waitFor(t, func() bool { layers.mu.Lock(); defer layers.mu.Unlock(); return layers.freezing == 1 })
	go func() { r, err := e.m.Commit(ctx, b, api.CommitVMRequest{CacheKey: "k"}); second <- result{r, err} }()
	go func() { r, err := e.m.Commit(ctx, c, api.CommitVMRequest{CacheKey: "other"}); other <- result{r, err} }()
	// The other key's commit reaches its freeze while the first holds its
	// own; the second of key k does not.
	waitFor(t, func() bool { layers.mu.Lock(); defer layers.mu.Unlock(); return layers.freezing == 2 })
	time.Sleep(50 * time.Millisecond)
	layers.mu.Lock()
	if layers.freezing != 2 {
		t.Errorf("%d freezes under way; the second commit of key k must wait", layers.freezing)
	}
	layers.mu.Unlock()
	close(hold)
	r1, r2, r3 := <-first, <-second, <-other
	if r1.err != nil || r3.err != nil {
		t.Fatalf("first commit %v, other key's %v", r1.err, r3.err)
	}
	conflictNaming(t, "second commit of key k", r2.err, r1.resp.CommitID, `"k"`)
	if rec := e.record(t, b); rec.CommitID != "" || rec.State != "stopped" {
		t.Errorf("refused commit changed its vm: %+v", rec)
	}
	got, _ := e.m.ListCommits(CommitFilter{CacheKey: "k"})
	if len(got) != 1 || got[0].CommitID != r1.resp.CommitID {
		t.Errorf("ListCommits(cache_key k) = %+v, want exactly the first", got)
	}

	// A failed commit frees its key.
	layers.mu.Lock()
	layers.hold, layers.failFreeze = nil, errors.New("disk full")
	layers.mu.Unlock()
	if _, err := e.m.Commit(ctx, b, api.CommitVMRequest{CacheKey: "k2"}); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("commit with a failing layer = %v", err)
	}
	layers.mu.Lock()
	layers.failFreeze = nil
	layers.mu.Unlock()
	if _, err := e.m.Commit(ctx, b, api.CommitVMRequest{CacheKey: "k2"}); err != nil {
		t.Fatalf("commit after a failed one with the same key: %v", err)
	}
	if n := len(e.commitDirs()); n != 3 {
		t.Errorf("%d commit directories, want the 3 commits'", n)
	}
}

// Many commits of one key at once: exactly one wins, and the layers are
// never made two at a time.
func TestCommitCacheKeyRace(t *testing.T) {
	e, layers, _ := newCommitEnv(t, nil, nil)
	var hosts []string
	for range 6 {
		hosts = append(hosts, e.stoppedVM(t, "sbox", api.CreateNodeRequest{}))
	}
	var wg sync.WaitGroup
	errs := make([]error, len(hosts))
	for i, h := range hosts {
		wg.Go(func() { _, errs[i] = e.m.Commit(context.Background(), h, api.CommitVMRequest{CacheKey: "race"}) })
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, api.ErrConflict):
			t.Errorf("commit = %v, want success or ErrConflict", err)
		}
	}
	if won != 1 || layers.maxAtOnce != 1 {
		t.Errorf("%d commits won, %d layers made at once; want 1 and 1", won, layers.maxAtOnce)
	}
}

// ListCommits filters by every tag given, cache key, source and mode.
func TestListCommitsFilters(t *testing.T) {
	e, _, _ := newCommitEnv(t, nil, nil)
	ctx := context.Background()
	a, b := e.stoppedVM(t, "sbox", api.CreateNodeRequest{}), e.stoppedVM(t, "sbox", api.CreateNodeRequest{})
	ca, err := e.m.Commit(ctx, a, api.CommitVMRequest{Tags: []string{"x", "y"}, CacheKey: "ka"})
	if err != nil {
		t.Fatal(err)
	}
	cb, err := e.m.Commit(ctx, b, api.CommitVMRequest{Tags: []string{"x"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		f    CommitFilter
		want []string
	}{
		{CommitFilter{}, []string{ca.CommitID, cb.CommitID}},
		{CommitFilter{Tags: []string{"x"}}, []string{ca.CommitID, cb.CommitID}},
		{CommitFilter{Tags: []string{"x", "y"}}, []string{ca.CommitID}},
		{CommitFilter{CacheKey: "ka"}, []string{ca.CommitID}},
		{CommitFilter{Source: b}, []string{cb.CommitID}},
		{CommitFilter{Mode: "disk"}, []string{ca.CommitID, cb.CommitID}},
		{CommitFilter{Mode: "memory"}, nil},
	} {
		got, err := e.m.ListCommits(tc.f)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, c := range got {
			ids = append(ids, c.CommitID)
			if c.SourceHostGroup != "sbox" || c.Mode != "disk" || c.CreatedAt.IsZero() {
				t.Errorf("commit info %+v", c)
			}
		}
		if strings.Join(ids, ",") != strings.Join(tc.want, ",") {
			t.Errorf("ListCommits(%+v) = %v, want %v", tc.f, ids, tc.want)
		}
	}
}

// A commit is not deleted while its source VM, a fork of it, or a commit
// over its layer exists; the refusal names them. Once they are gone its
// layer and directory go with it.
func TestDeleteCommitRefusedWhileUsed(t *testing.T) {
	e, _, _ := newCommitEnv(t, nil, nil)
	e.m.opt.Clone = qcow2Clone
	ctx := context.Background()
	src := e.stoppedVM(t, "sbox", api.CreateNodeRequest{})
	c1, err := e.m.Commit(ctx, src, api.CommitVMRequest{})
	if err != nil {
		t.Fatal(err)
	}
	child, err := e.m.Fork(ctx, c1.CommitID, api.ForkVMRequest{Persistent: true}, ForkOptions{})
	if err != nil {
		t.Fatal(err)
	}
	conflictNaming(t, "delete with source and child", e.m.DeleteCommit(ctx, c1.CommitID), src, child.Hostname)

	// The child, committed, makes a commit over c1's layer.
	e.stop(t, child.Hostname)
	c2, err := e.m.Commit(ctx, child.Hostname, api.CommitVMRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := e.store.GetCommit(c2.CommitID); c.Parent != c1.CommitID {
		t.Errorf("commit of a fork has parent %q, want %s", c.Parent, c1.CommitID)
	}
	for _, h := range []string{src, child.Hostname} {
		if _, err := e.m.Delete(ctx, "sbox", h); err != nil {
			t.Fatal(err)
		}
	}
	conflictNaming(t, "delete of a commit another is over", e.m.DeleteCommit(ctx, c1.CommitID), c2.CommitID)
	if err := e.m.DeleteCommit(ctx, c2.CommitID); err != nil {
		t.Fatalf("delete of the unused commit: %v", err)
	}
	if err := e.m.DeleteCommit(ctx, c1.CommitID); err != nil {
		t.Fatalf("delete of c1 once nothing uses it: %v", err)
	}
	if err := e.m.DeleteCommit(ctx, c1.CommitID); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("second delete = %v, want ErrNotFound", err)
	}
	for _, id := range []string{"", "../x", "a/b", `a\b`, "a\x00"} {
		if err := e.m.DeleteCommit(ctx, id); !errors.Is(err, api.ErrInvalid) {
			t.Errorf("delete of id %q = %v, want ErrInvalid", id, err)
		}
	}
	if d := e.commitDirs(); len(d) != 0 {
		t.Errorf("commit directories left: %v", d)
	}
	e.assertEmpty(t)
}

// A delete of a source VM keeps the commit's layer: the commit owns it.
func TestDeleteSourceKeepsLayer(t *testing.T) {
	e, _, _ := newCommitEnv(t, nil, nil)
	e.m.opt.Clone = qcow2Clone
	ctx := context.Background()
	src := e.stoppedVM(t, "sbox", api.CreateNodeRequest{})
	resp, err := e.m.Commit(ctx, src, api.CommitVMRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.Delete(ctx, "sbox", src); err != nil {
		t.Fatal(err)
	}
	c, _ := e.store.GetCommit(resp.CommitID)
	if _, err := os.Stat(c.Layer); err != nil {
		t.Fatalf("layer gone with its source: %v", err)
	}
	// And a fork still boots from it.
	if _, err := e.m.Fork(ctx, resp.CommitID, api.ForkVMRequest{}, ForkOptions{}); err != nil {
		t.Fatalf("fork after the source is gone: %v", err)
	}
}

// After a crash: a commit being written is undone (the source's disk back
// as it was), a commit being deleted is removed, a commit directory no
// record names goes, and a fork never finished is reclaimed. A ready
// commit survives.
func TestRecoverCommits(t *testing.T) {
	e, layers, _ := newCommitEnv(t, nil, nil)
	e.m.opt.Clone = qcow2Clone
	ctx := context.Background()
	keep := e.stoppedVM(t, "sbox", api.CreateNodeRequest{})
	kept, err := e.m.Commit(ctx, keep, api.CommitVMRequest{CacheKey: "kept"})
	if err != nil {
		t.Fatal(err)
	}

	// A commit cut short after its layer was made: record writing, disk
	// moved to the layer and an overlay in its place.
	cut := e.stoppedVM(t, "sbox", api.CreateNodeRequest{})
	rec := e.record(t, cut)
	half := store.Commit{ID: "cmt-half", State: store.CommitWriting, Mode: "disk", Source: cut, Group: "sbox",
		Layer: filepath.Join(e.dir, "commits", "cmt-half", "disk.qcow2"), LayerFormat: "qcow2", SourceDisk: rec.Disk, SourceFormat: "qcow2", CacheKey: "half"}
	if err := e.store.CreateCommit(half); err != nil {
		t.Fatal(err)
	}
	if err := layers.Freeze(ctx, rec.Disk, "qcow2", half.Layer); err != nil {
		t.Fatal(err)
	}
	// A commit whose delete was cut short.
	del := e.stoppedVM(t, "sbox", api.CreateNodeRequest{})
	gone, err := e.m.Commit(ctx, del, api.CommitVMRequest{})
	if err != nil {
		t.Fatal(err)
	}
	gc, _ := e.store.GetCommit(gone.CommitID)
	gc.State = store.CommitDeleting
	e.store.PutCommit(gc)
	// A directory without a record.
	os.MkdirAll(filepath.Join(e.dir, "commits", "cmt-stray"), 0o755)
	// A fork whose finalisation never ended.
	child, err := e.m.Fork(ctx, kept.CommitID, api.ForkVMRequest{Persistent: true}, ForkOptions{})
	if err != nil {
		t.Fatal(err)
	}
	crec := e.record(t, child.Hostname)
	crec.Unfinished = true
	e.store.Put(crec)

	m := e.next(t)
	if got, _ := os.ReadFile(rec.Disk); string(got) != "disk" {
		t.Errorf("the source of the cut commit has disk %q, want its own back", got)
	}
	if _, err := e.store.GetCommit("cmt-half"); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("half commit record: %v, want it gone", err)
	}
	if _, err := e.store.GetCommit(gone.CommitID); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("half-deleted commit record: %v, want it gone", err)
	}
	if d := e.commitDirs(); len(d) != 1 || d[0] != kept.CommitID {
		t.Errorf("commit directories after recovery: %v, want only %s", d, kept.CommitID)
	}
	if _, err := m.get(child.Hostname); err == nil || e.hasDisk(child.Hostname) {
		t.Errorf("unfinished fork %s kept after recovery", child.Hostname)
	}
	if got, _ := m.ListCommits(CommitFilter{}); len(got) != 1 || got[0].CommitID != kept.CommitID {
		t.Errorf("commits after recovery: %+v, want only %s", got, kept.CommitID)
	}
	// The key of the undone commit is free again.
	if _, err := m.Commit(ctx, cut, api.CommitVMRequest{CacheKey: "half"}); err != nil {
		t.Errorf("commit of the cut commit's source: %v", err)
	}
}
