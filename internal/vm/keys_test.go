package vm

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/hypervisor/hypervisortest"
)

// fakeKeys serves keys by user; a missing user is ErrInvalid, and err, when
// set, is returned for everyone (a key source out of reach).
type fakeKeys struct {
	keys  map[string][]string
	err   error
	asked []string
}

func (f *fakeKeys) Keys(ctx context.Context, user string) ([]string, error) {
	f.asked = append(f.asked, user)
	if f.err != nil {
		return nil, f.err
	}
	k, ok := f.keys[user]
	if !ok {
		return nil, fmt.Errorf("%w: GitHub user %q does not exist", api.ErrInvalid, user)
	}
	return k, nil
}

func TestImportUserKeys(t *testing.T) {
	keys := &fakeKeys{keys: map[string][]string{"alice": {"ssh-ed25519 AAAA-alice"}, "ops": {"ssh-ed25519 AAAA-ops", "ssh-ed25519 AAAA-shared"}}}
	e := newEnv(t, &hypervisortest.Fake{})
	e.m.opt.Keys = keys
	e.m.opt.Config.SSHKeys = []string{"ssh-ed25519 AAAA-config"}
	e.m.opt.Config.GitHubUser = "ops"
	ctx := context.Background()

	for _, tc := range []struct {
		req  api.CreateNodeRequest
		want []string
	}{
		{api.CreateNodeRequest{ImportUser: "alice", SSHKeys: []string{"ssh-ed25519 AAAA-shared", "ssh-ed25519 AAAA-req"}},
			[]string{"ssh-ed25519 AAAA-config", "ssh-ed25519 AAAA-ops", "ssh-ed25519 AAAA-shared", "ssh-ed25519 AAAA-alice", "ssh-ed25519 AAAA-req"}},
		{api.CreateNodeRequest{GitHubUser: "alice"}, // the alias
			[]string{"ssh-ed25519 AAAA-config", "ssh-ed25519 AAAA-ops", "ssh-ed25519 AAAA-shared", "ssh-ed25519 AAAA-alice"}},
		{api.CreateNodeRequest{ImportUser: "ops"}, // the config's user once
			[]string{"ssh-ed25519 AAAA-config", "ssh-ed25519 AAAA-ops", "ssh-ed25519 AAAA-shared"}},
	} {
		resp, err := e.m.Create(ctx, "sbox", tc.req, CreateOptions{})
		if err != nil {
			t.Fatalf("Create(%+v): %v", tc.req, err)
		}
		if got := e.record(t, resp.Hostname).SSHKeys; !slices.Equal(got, tc.want) {
			t.Errorf("Create(%+v) installs keys %q, want %q", tc.req, got, tc.want)
		}
		if _, err := e.m.Delete(ctx, "sbox", resp.Hostname); err != nil {
			t.Fatal(err)
		}
	}

	// Failures come before anything exists.
	unreachable := fmt.Errorf("%w: dial tcp: connection refused", api.ErrUnavailable)
	for _, tc := range []struct {
		name string
		req  api.CreateNodeRequest
		err  error
		want error
	}{
		{"no such user", api.CreateNodeRequest{ImportUser: "nobody"}, nil, api.ErrInvalid},
		{"two users", api.CreateNodeRequest{ImportUser: "alice", GitHubUser: "bob"}, nil, api.ErrInvalid},
		{"source out of reach", api.CreateNodeRequest{ImportUser: "alice"}, unreachable, api.ErrUnavailable},
		{"config user, source out of reach", api.CreateNodeRequest{}, unreachable, api.ErrUnavailable},
	} {
		keys.err = tc.err
		_, err := e.m.Create(ctx, "sbox", tc.req, CreateOptions{})
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: Create = %v, want %v", tc.name, err, tc.want)
		}
		e.assertEmpty(t)
	}
}
