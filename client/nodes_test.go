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

	"github.com/google/go-cmp/cmp"
	"github.com/openslicer/openslicer/api"
)

func TestCreateNodeGroupResolution(t *testing.T) {
	tests := []struct {
		name      string
		group     string
		groups    string
		wantPath  string
		wantError error // nil: success
	}{
		{"explicit group skips lookup", "b", `[{"name":"a"},{"name":"b"}]`, "/hostgroup/b/nodes", nil},
		{"one group", "", `[{"name":"only"}]`, "/hostgroup/only/nodes", nil},
		{"several groups", "", `[{"name":"a"},{"name":"b"}]`, "", api.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var lookups int
			var gotPath, gotQuery string
			var gotBody api.CreateNodeRequest
			mux := http.NewServeMux()
			mux.HandleFunc("GET /hostgroup", func(w http.ResponseWriter, r *http.Request) {
				lookups++
				_, _ = io.WriteString(w, tt.groups)
			})
			mux.HandleFunc("POST /hostgroup/{g}/nodes", func(w http.ResponseWriter, r *http.Request) {
				gotPath, gotQuery = r.URL.Path, r.URL.RawQuery
				_ = json.NewDecoder(r.Body).Decode(&gotBody)
				w.WriteHeader(http.StatusCreated)
				_, _ = io.WriteString(w, `{"hostname":"`+r.PathValue("g")+`-1","ip":"10.0.0.2/24","created_at":"2026-02-27T16:30:53Z"}`)
			})
			srv := httptest.NewServer(mux)
			t.Cleanup(srv.Close)

			req := api.CreateNodeRequest{CPUs: 2, Tags: []string{"name=web"}}
			resp, err := New(srv.URL, "").CreateNode(context.Background(), tt.group, req, CreateOptions{Wait: WaitAgent, Timeout: 2 * time.Minute})
			if tt.wantError != nil {
				if !errors.Is(err, tt.wantError) {
					t.Fatalf("CreateNode() error = %v, want %v", err, tt.wantError)
				}
				if gotPath != "" {
					t.Errorf("CreateNode() posted to %s after failing to pick a group", gotPath)
				}
				return
			}
			if err != nil {
				t.Fatalf("CreateNode(): %v", err)
			}
			if gotPath != tt.wantPath || gotQuery != "timeout=2m0s&wait=agent" {
				t.Errorf("request %s?%s, want %s?timeout=2m0s&wait=agent", gotPath, gotQuery, tt.wantPath)
			}
			if diff := cmp.Diff(req, gotBody); diff != "" {
				t.Errorf("request body mismatch (-want +got):\n%s", diff)
			}
			if wantLookups := map[bool]int{true: 1, false: 0}[tt.group == ""]; lookups != wantLookups {
				t.Errorf("GET /hostgroup called %d times, want %d", lookups, wantLookups)
			}
			if resp.IP != "10.0.0.2/24" {
				t.Errorf("response IP = %q", resp.IP)
			}
		})
	}
}

func TestPickGroupNone(t *testing.T) {
	if _, err := pickGroup(nil); err == nil {
		t.Error("pickGroup(nil) succeeded, want error")
	}
}

func TestCreateNodeRejectsBadWait(t *testing.T) {
	_, err := New("http://127.0.0.1:1", "").CreateNode(context.Background(), "g", api.CreateNodeRequest{}, CreateOptions{Wait: "forever"})
	if !errors.Is(err, api.ErrInvalid) {
		t.Errorf("CreateNode(wait=forever) error = %v, want ErrInvalid", err)
	}
}

func TestRequests(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name      string
		call      func(c *Client) error
		status    int
		body      string
		wantReq   string // method path?query
		wantCType string
	}{
		{"list by tag", func(c *Client) error { _, err := c.ListNodes(ctx, ListOptions{Tag: "name=x"}); return err }, 200, `[]`, "GET /nodes?tag=name%3Dx", ""},
		{"list by prefix", func(c *Client) error { _, err := c.ListNodes(ctx, ListOptions{TagPrefix: "role"}); return err }, 200, `[]`, "GET /nodes?tag_prefix=role", ""},
		{"delete", func(c *Client) error { _, err := c.DeleteNode(ctx, "vm", "vm-1"); return err }, 200, `{"message":"ok","disk_removed":"true"}`, "DELETE /hostgroup/vm/nodes/vm-1", ""},
		{"delete 204", func(c *Client) error { _, err := c.DeleteNode(ctx, "vm", "vm-1"); return err }, 204, ``, "DELETE /hostgroup/vm/nodes/vm-1", ""},
		{"logs all", func(c *Client) error { _, err := c.Logs(ctx, "vm-1", 0); return err }, 200, `{}`, "GET /vm/vm-1/logs?lines=0", ""},
		{"logs default", func(c *Client) error { _, err := c.Logs(ctx, "vm-1", -1); return err }, 200, `{}`, "GET /vm/vm-1/logs", ""},
		{"stats all", func(c *Client) error { _, err := c.Stats(ctx, ""); return err }, 200, `[]`, "GET /nodes/stats", ""},
		{"stats one", func(c *Client) error { _, err := c.Stats(ctx, "vm-1"); return err }, 200, `[]`, "GET /node/vm-1/stats", ""},
		{"shutdown", func(c *Client) error { return c.Shutdown(ctx, "vm-1", ActionShutdown) }, 200, "ok", "POST /vm/vm-1/shutdown?action=shutdown", ""},
		{"pause", func(c *Client) error { return c.Pause(ctx, "vm-1") }, 200, "", "POST /vm/vm-1/pause", ""},
		{"resume", func(c *Client) error { return c.Resume(ctx, "vm-1") }, 200, "", "POST /vm/vm-1/resume", ""},
		{"suspend", func(c *Client) error { return c.Suspend(ctx, "vm-1") }, 200, "", "POST /vm/vm-1/suspend", ""},
		{"restore", func(c *Client) error { return c.Restore(ctx, "vm-1", WaitAgent, 45*time.Second) }, 200, "", "POST /vm/vm-1/restore?timeout=45s&wait=agent", ""},
		{"relaunch", func(c *Client) error { _, err := c.Relaunch(ctx, "vm-1"); return err }, 201, `{"hostname":"vm-1"}`, "POST /vm/vm-1/relaunch", ""},
		{"tags", func(c *Client) error { _, err := c.Tags(ctx, "vm-1"); return err }, 200, `{"hostname":"vm-1","tags":[]}`, "GET /vm/vm-1/tags", ""},
		{"update tags", func(c *Client) error {
			_, err := c.UpdateTags(ctx, "vm-1", api.VMTagUpdate{Add: []string{"a=b"}})
			return err
		}, 200, `{"hostname":"vm-1","tags":["a=b"]}`, "PATCH /vm/vm-1/tags", "application/json"},
		{"secrets", func(c *Client) error { _, err := c.ListSecrets(ctx); return err }, 200, `[]`, "GET /secrets", ""},
		{"create secret", func(c *Client) error { return c.CreateSecret(ctx, api.CreateSecretRequest{Name: "a", Data: "eA=="}) }, 201, ``, "POST /secrets", "application/json"},
		{"patch secret", func(c *Client) error { return c.PatchSecret(ctx, "a", api.UpdateSecretRequest{}) }, 200, ``, "PATCH /secrets/a", "application/json"},
		{"delete secret", func(c *Client) error { return c.DeleteSecret(ctx, "a") }, 200, ``, "DELETE /secrets/a", ""},
		{"daemon shutdown", func(c *Client) error { return c.ShutdownDaemon(ctx) }, 202, ``, "POST /daemon/shutdown", ""},
		{"healthz", func(c *Client) error { return c.HealthZ(ctx) }, 200, "OK", "GET /healthz", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{status: tt.status, body: tt.body}
			srv := httptest.NewServer(rec)
			t.Cleanup(srv.Close)
			if err := tt.call(New(srv.URL, "")); err != nil {
				t.Fatalf("call: %v", err)
			}
			got := rec.method + " " + rec.path
			if rec.rawQuery != "" {
				got += "?" + rec.rawQuery
			}
			if got != tt.wantReq || rec.contentType != tt.wantCType {
				t.Errorf("request = %q (Content-Type %q), want %q (%q)", got, rec.contentType, tt.wantReq, tt.wantCType)
			}
		})
	}
}

func TestDeleteNodeBodyError(t *testing.T) {
	srv := httptest.NewServer(&recorder{body: `{"error":"disk busy"}`})
	t.Cleanup(srv.Close)
	if _, err := New(srv.URL, "").DeleteNode(context.Background(), "vm", "vm-1"); err == nil {
		t.Error("DeleteNode() with an error body succeeded, want error")
	}
}

func TestReady(t *testing.T) {
	tests := []struct {
		status  int
		want    bool
		wantErr error
	}{
		{200, true, nil},
		{503, false, nil},
		{500, false, nil},
		{409, false, nil},
		{404, false, api.ErrNotFound},
	}
	for _, tt := range tests {
		rec := &recorder{status: tt.status}
		srv := httptest.NewServer(rec)
		got, err := New(srv.URL, "").Ready(context.Background(), "vm-1")
		srv.Close()
		if got != tt.want || !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
			t.Errorf("status %d: Ready() = %v, %v; want %v, %v", tt.status, got, err, tt.want, tt.wantErr)
		}
		if rec.method != http.MethodHead {
			t.Errorf("Ready() used %s, want HEAD", rec.method)
		}
	}
}
