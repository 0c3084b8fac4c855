package e2e

import (
	"context"
	"encoding/base64"
	"net/http"
	"strings"
	"testing"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/client"
	"github.com/openslicer/openslicer/internal/testenv"
)

// TestSecrets checks that secrets reach guests with their owner and mode,
// scoped by the create request's list, that updates and deletes reach
// running VMs, and that the guest can pull them again itself.
func TestSecrets(t *testing.T) {
	testenv.RequireE2E(t)
	t.Parallel()
	d := startDaemon(t, "sec")
	c, ctx := d.client, context.Background()
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	if err := c.CreateSecret(ctx, api.CreateSecretRequest{Name: "db", Data: b64("pw-1"), Permissions: "0640", UID: 1000, GID: 1000}); err != nil {
		t.Fatal(err)
	}
	if out, code := d.cli(t, "", "secret", "create", "api-key", "--from-literal", "k-1"); code != 0 {
		t.Fatalf("slicer secret create: %q exit %d", out, code)
	}
	if _, err := c.CreateNode(ctx, "sec", api.CreateNodeRequest{Secrets: []string{"nope"}}, client.CreateOptions{}); !isStatus(err, http.StatusBadRequest) || !strings.Contains(err.Error(), "nope") {
		t.Errorf("create naming a missing secret = %v, want 400 naming it", err)
	}

	scoped := createReady(t, c, "sec", api.CreateNodeRequest{Secrets: []string{"db"}}).Hostname
	all := createReady(t, c, "sec", api.CreateNodeRequest{}).Hostname
	root := u32(0)
	list := func(vm string) string {
		t.Helper()
		out, _, _ := execIn(t, c, vm, &api.ExecRequest{Command: "cd /run/slicer/secrets && for f in *; do echo \"$f $(stat -c '%u:%g %a' $f) $(cat $f)\"; done", Shell: "/bin/sh", UID: root}, nil)
		return out
	}
	if got, want := list(scoped), "db 1000:1000 640 pw-1\n"; got != want {
		t.Errorf("scoped vm secrets = %q, want %q", got, want)
	}
	if got, want := list(all), "api-key 0:0 600 k-1\ndb 1000:1000 640 pw-1\n"; got != want {
		t.Errorf("unscoped vm secrets = %q, want %q", got, want)
	}
	out, _, _ := execIn(t, c, scoped, &api.ExecRequest{Command: "cat", Args: []string{"/run/slicer/secrets/db"}}, nil)
	if out != "pw-1" {
		t.Errorf("the default user reads its own secret as %q", out)
	}

	// Changes reach running VMs.
	newValue := b64("pw-2")
	if err := c.PatchSecret(ctx, "db", api.UpdateSecretRequest{Data: &newValue}); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteSecret(ctx, "api-key"); err != nil {
		t.Fatal(err)
	}
	if got, want := list(all), "db 1000:1000 640 pw-2\n"; got != want {
		t.Errorf("after update and delete = %q, want %q", got, want)
	}

	// The guest pulls them again itself.
	execIn(t, c, all, &api.ExecRequest{Command: "rm /run/slicer/secrets/db", Shell: "/bin/sh", UID: root}, nil)
	out, _, code := execIn(t, c, all, &api.ExecRequest{Command: "/usr/local/bin/slicer-agent", Args: []string{"secrets", "sync"}, UID: root}, nil)
	if code != 0 {
		t.Errorf("slicer-agent secrets sync: %q exit %d", out, code)
	}
	if got, want := list(all), "db 1000:1000 640 pw-2\n"; got != want {
		t.Errorf("after secrets sync in the guest = %q, want %q", got, want)
	}

	for _, vm := range []string{scoped, all} {
		if _, err := c.DeleteNode(ctx, "sec", vm); err != nil {
			t.Fatal(err)
		}
	}
	d.assertNothingLeft(t)
}
