package client

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/openslicer/openslicer/api"
)

// bodyRecorder is recorder that also keeps the request body.
type bodyRecorder struct {
	recorder
	reqBody string
}

func (b *bodyRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	data, _ := io.ReadAll(r.Body)
	b.reqBody = string(data)
	b.recorder.ServeHTTP(w, r)
}

// The commit calls send what Slicer's SDK sends: a commit without options
// has no body, its cache key is trimmed; list filters are repeated tags
// and single keys; a fork always names its wait, its timeout only when
// set, and its body keeps the nil/empty meanings of its lists.
func TestCommitCallsWire(t *testing.T) {
	rec := &bodyRecorder{}
	srv := httptest.NewServer(rec)
	t.Cleanup(srv.Close)
	c := New(srv.URL, "")
	ctx := context.Background()

	rec.body = `{"hostname":"vm-1","commit_id":"cmt-demo","status":"committed","mode":"disk"}`
	resp, err := c.CommitVM(ctx, "vm-1")
	if err != nil || resp.CommitID != "cmt-demo" {
		t.Fatalf("CommitVM = %+v, %v", resp, err)
	}
	if rec.method != "POST" || rec.path != "/vm/vm-1/commit" || rec.reqBody != "" || rec.contentType != "" {
		t.Errorf("CommitVM sent %s %s body %q type %q; want POST /vm/vm-1/commit without a body", rec.method, rec.path, rec.reqBody, rec.contentType)
	}
	if _, err := c.CommitVMWithOptions(ctx, "vm-1", api.CommitVMRequest{CacheKey: "  k1 "}); err != nil {
		t.Fatal(err)
	}
	if rec.reqBody != `{"cache_key":"k1"}` || rec.contentType != "application/json" {
		t.Errorf("commit with a cache key sent %q (%s)", rec.reqBody, rec.contentType)
	}

	rec.body = `[{"commit_id":"cmt-demo","source_hostname":"vm-1","source_host_group":"vm","created_at":"2026-12-01T10:00:00Z","mode":"disk","cache_key":"k1"}]`
	list, err := c.ListCommits(ctx, CommitListOptions{Tags: []string{"a", "b"}, CacheKey: "k1", Source: "vm-1", Mode: "disk"})
	if err != nil || len(list) != 1 || list[0].SourceHostGroup != "vm" || list[0].CacheKey != "k1" {
		t.Fatalf("ListCommits = %+v, %v", list, err)
	}
	if rec.path != "/vm/commits" || rec.rawQuery != "cache_key=k1&mode=disk&source=vm-1&tag=a&tag=b" {
		t.Errorf("ListCommits sent %s?%s", rec.path, rec.rawQuery)
	}

	rec.body = `{"hostname":"vm-2","source_hostname":"vm-1","commit_id":"cmt-demo","status":"forked","child_status":"running","mode":"disk","persistent":false}`
	fr, err := c.CommittedVM("cmt-demo").Fork(ctx, WithTimeout(2*time.Minute), WithNetwork(api.ForkVMNetworkPolicy{Allow: &[]string{}}),
		WithTags("job=review"), WithTagMode(api.TagModeReplace), WithSecrets(), WithFixups(), WithSize(1, 512<<20))
	if err != nil || fr.Hostname != "vm-2" || fr.ChildStatus != "running" {
		t.Fatalf("Fork = %+v, %v", fr, err)
	}
	if rec.method != "POST" || rec.path != "/vm/commits/cmt-demo/fork" || rec.rawQuery != "timeout=2m0s&wait=agent" {
		t.Errorf("Fork sent %s %s?%s", rec.method, rec.path, rec.rawQuery)
	}
	const want = `{"network":{"allow":[]},"tags":["job=review"],"tag_mode":"replace","secrets":[],"persistent":false,"fixups":[],"vcpu":1,"ram_bytes":536870912}`
	var got, wantV map[string]any
	json.Unmarshal([]byte(rec.reqBody), &got)
	json.Unmarshal([]byte(want), &wantV)
	gj, _ := json.Marshal(got)
	wj, _ := json.Marshal(wantV)
	if string(gj) != string(wj) {
		t.Errorf("fork body %s, want the SDK fixture %s", rec.reqBody, want)
	}
	if _, err := c.ForkCommittedVM(ctx, "cmt-demo", api.ForkVMRequest{}, ForkOptions{Wait: WaitNone}); err != nil || rec.rawQuery != "wait=none" {
		t.Errorf("fork wait=none sent %q, %v", rec.rawQuery, err)
	}
	if _, err := c.ForkCommittedVM(ctx, "cmt-demo", api.ForkVMRequest{}, ForkOptions{Wait: "userdata"}); !errors.Is(err, api.ErrInvalid) {
		t.Errorf("fork wait=userdata = %v, want ErrInvalid before any request", err)
	}

	rec.body = `{"commit_id":"cmt-demo","status":"deleted"}`
	dr, err := c.DeleteCommit(ctx, "cmt-demo")
	if err != nil || dr.Status != "deleted" || rec.method != "DELETE" || rec.path != "/vm/commits/cmt-demo" {
		t.Errorf("DeleteCommit = %+v, %v; sent %s %s", dr, err, rec.method, rec.path)
	}

	// IDs the SDK rejects never reach the daemon.
	rec.path = ""
	for _, id := range []string{"", "..", "a/b", `a\b`, "a\x00"} {
		if _, err := c.DeleteCommit(ctx, id); !errors.Is(err, api.ErrInvalid) {
			t.Errorf("DeleteCommit(%q) = %v, want ErrInvalid", id, err)
		}
		if _, err := c.CommittedVM(id).Fork(ctx); !errors.Is(err, api.ErrInvalid) {
			t.Errorf("Fork of %q = %v, want ErrInvalid", id, err)
		}
	}
	if rec.path != "" {
		t.Errorf("a bad id reached the daemon: %s", rec.path)
	}
}
