package client

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/openslicer/openslicer/api"
)

// Commits and cold forks (spec §3.14). The names follow Slicer's Go SDK:
// CommitVM, CommitVMWithOptions, ListCommits, DeleteCommit,
// ForkCommittedVM, and a committed VM's Fork with functional options.

// WaitNone asks a fork not to wait for its child's agent (ForkOptions.Wait).
const WaitNone = "none"

// CommitVM commits a stopped persistent VM (POST /vm/{hostname}/commit):
// its disk becomes a read-only layer that forks are made over.
func (c *Client) CommitVM(ctx context.Context, hostname string) (*api.CommitVMResponse, error) {
	return c.CommitVMWithOptions(ctx, hostname, api.CommitVMRequest{})
}

// CommitVMWithOptions is CommitVM with tags, labels and a cache key (trimmed
// of white space). The body is sent only when something is set.
func (c *Client) CommitVMWithOptions(ctx context.Context, hostname string, opts api.CommitVMRequest) (*api.CommitVMResponse, error) {
	opts.CacheKey = strings.TrimSpace(opts.CacheKey)
	var body any
	if !opts.IsZero() {
		body = opts
	}
	var resp api.CommitVMResponse
	if err := c.call(ctx, http.MethodPost, nil, body, &resp, "vm", hostname, "commit"); err != nil {
		return nil, err
	}
	return &resp, nil
}

// CommitListOptions filters ListCommits: a commit is listed when it has
// every tag in Tags and matches each other field that is set.
type CommitListOptions struct {
	Tags     []string
	CacheKey string
	Source   string
	Mode     string
}

func (o CommitListOptions) query() url.Values {
	q := url.Values{}
	for _, t := range o.Tags {
		q.Add("tag", t)
	}
	for k, v := range map[string]string{"cache_key": strings.TrimSpace(o.CacheKey), "source": o.Source, "mode": o.Mode} {
		if v != "" {
			q.Set(k, v)
		}
	}
	return q
}

// ListCommits lists commits, oldest first (GET /vm/commits).
func (c *Client) ListCommits(ctx context.Context, opts CommitListOptions) ([]api.CommitInfo, error) {
	var out []api.CommitInfo
	if err := c.call(ctx, http.MethodGet, opts.query(), nil, &out, "vm", "commits"); err != nil {
		return nil, err
	}
	return out, nil
}

// DeleteCommit removes a commit and its layer (DELETE /vm/commits/{id}).
// The daemon refuses (409) while the commit's source VM or a VM forked
// from it exists.
func (c *Client) DeleteCommit(ctx context.Context, commitID string) (*api.CommitDeleteResponse, error) {
	if err := api.CheckCommitID(commitID); err != nil {
		return nil, err
	}
	var resp api.CommitDeleteResponse
	if err := c.call(ctx, http.MethodDelete, nil, nil, &resp, "vm", "commits", commitID); err != nil {
		return nil, err
	}
	return &resp, nil
}

// ForkOptions are a fork's query: Wait is WaitAgent (the default when
// empty) or WaitNone; Timeout bounds the wait on the daemon's side (zero:
// the daemon's default).
type ForkOptions struct {
	Wait    string
	Timeout time.Duration
}

// ForkCommittedVM makes a new VM from a commit (POST
// /vm/commits/{id}/fork). The daemon names it <group>-N in the commit's
// host group.
func (c *Client) ForkCommittedVM(ctx context.Context, commitID string, req api.ForkVMRequest, opts ForkOptions) (*api.ForkVMResponse, error) {
	if err := api.CheckCommitID(commitID); err != nil {
		return nil, err
	}
	wait := opts.Wait
	if wait == "" {
		wait = WaitAgent
	}
	if wait != WaitAgent && wait != WaitNone {
		return nil, fmt.Errorf("%w: fork wait %q: want %s or %s", api.ErrInvalid, wait, WaitAgent, WaitNone)
	}
	q := url.Values{"wait": {wait}}
	if opts.Timeout > 0 {
		q.Set("timeout", opts.Timeout.String())
	}
	var resp api.ForkVMResponse
	if err := c.call(ctx, http.MethodPost, q, req, &resp, "vm", "commits", commitID, "fork"); err != nil {
		return nil, err
	}
	return &resp, nil
}

// CommittedVM is a commit to fork from.
type CommittedVM struct {
	c  *Client
	ID string
}

// CommittedVM returns the commit commitID of this daemon.
func (c *Client) CommittedVM(commitID string) *CommittedVM {
	return &CommittedVM{c: c, ID: commitID}
}

// ForkOption sets something of a fork.
type ForkOption func(*api.ForkVMRequest, *ForkOptions)

// WithTimeout bounds the daemon's wait for the child's agent.
func WithTimeout(d time.Duration) ForkOption {
	return func(_ *api.ForkVMRequest, o *ForkOptions) { o.Timeout = d }
}

// WithWait sets the fork's wait: WaitAgent (the default) or WaitNone.
func WithWait(wait string) ForkOption {
	return func(_ *api.ForkVMRequest, o *ForkOptions) { o.Wait = wait }
}

// WithNetwork overrides the child's egress lists (isolated groups): a nil
// list inherits the source's, an empty one clears it.
func WithNetwork(p api.ForkVMNetworkPolicy) ForkOption {
	return func(r *api.ForkVMRequest, _ *ForkOptions) { r.Network = &p }
}

// WithTags adds tags to the child (to its source's, unless WithTagMode
// says replace).
func WithTags(tags ...string) ForkOption {
	return func(r *api.ForkVMRequest, _ *ForkOptions) { r.Tags = append(r.Tags, tags...) }
}

// WithTagMode is api.TagModeAppend (the default) or api.TagModeReplace.
func WithTagMode(mode string) ForkOption {
	return func(r *api.ForkVMRequest, _ *ForkOptions) { r.TagMode = mode }
}

// WithSecrets grants the child exactly these secrets (none for an empty
// list) instead of its source's.
func WithSecrets(names ...string) ForkOption {
	return func(r *api.ForkVMRequest, _ *ForkOptions) { s := append([]string{}, names...); r.Secrets = &s }
}

// WithPersistent keeps the child and its disk when it stops.
func WithPersistent(p bool) ForkOption {
	return func(r *api.ForkVMRequest, _ *ForkOptions) { r.Persistent = p }
}

// WithFixups applies only these fix-ups (api.Fixup*; none for an empty
// list) instead of all of them.
func WithFixups(fixups ...string) ForkOption {
	return func(r *api.ForkVMRequest, _ *ForkOptions) { f := append([]string{}, fixups...); r.Fixups = &f }
}

// WithSize sizes the child: vCPUs and RAM in bytes (zero: the source's).
func WithSize(vcpu int, ramBytes int64) ForkOption {
	return func(r *api.ForkVMRequest, _ *ForkOptions) { r.VCPU, r.RamBytes = vcpu, ramBytes }
}

// Fork makes a new VM from the commit (ForkCommittedVM).
func (cv *CommittedVM) Fork(ctx context.Context, opts ...ForkOption) (*api.ForkVMResponse, error) {
	var req api.ForkVMRequest
	var fo ForkOptions
	for _, o := range opts {
		o(&req, &fo)
	}
	return cv.c.ForkCommittedVM(ctx, cv.ID, req, fo)
}

// Delete removes the commit (DeleteCommit).
func (cv *CommittedVM) Delete(ctx context.Context) (*api.CommitDeleteResponse, error) {
	return cv.c.DeleteCommit(ctx, cv.ID)
}
