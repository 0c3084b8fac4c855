package vm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"time"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/agent"
	"github.com/openslicer/openslicer/internal/config"
)

// KeySource fetches the public SSH keys of a GitHub user
// (internal/githubkeys.Source). Errors carry their class: ErrInvalid for a
// user without keys, ErrUnavailable when the keys cannot be had now.
type KeySource interface {
	Keys(ctx context.Context, user string) ([]string, error)
}

// firstBootFor returns the first-boot data of a new VM: the request's
// userdata, or else its group's; the SSH keys of the config (ssh_keys and
// github_user's) and of the request (ssh_keys and import_user's, or its
// alias github_user), each once. It fetches keys from the key source, so it
// runs before anything of the VM exists: a user without keys, or a key
// source out of reach, fails the create with nothing to undo.
func (m *Manager) firstBootFor(ctx context.Context, g config.HostGroup, req api.CreateNodeRequest) (agent.FirstBoot, error) {
	fb := agent.FirstBoot{Userdata: req.Userdata}
	if fb.Userdata == "" {
		fb.Userdata = g.Userdata
		if g.UserdataFile != "" {
			data, err := os.ReadFile(g.UserdataFile)
			if err != nil {
				return fb, fmt.Errorf("host group %q userdata_file: %w", g.Name, err)
			}
			fb.Userdata = string(data)
		}
	}
	users, err := githubUsers(m.opt.Config.GitHubUser, req)
	if err != nil {
		return fb, err
	}
	keys := append([]string{}, m.opt.Config.SSHKeys...)
	for _, u := range users {
		if m.opt.Keys == nil {
			return fb, fmt.Errorf("%s: this daemon has no GitHub key source: %w", u.field, api.ErrNotImplemented)
		}
		got, err := m.opt.Keys.Keys(ctx, u.name)
		if err != nil {
			return fb, fmt.Errorf("%s: %w", u.field, err)
		}
		keys = append(keys, got...)
	}
	fb.SSHKeys = uniqueKeys(append(keys, req.SSHKeys...))
	return fb, nil
}

// githubUser is a GitHub user whose keys a VM gets, and the field that
// named it.
type githubUser struct{ name, field string }

// githubUsers returns the GitHub users whose keys a new VM gets: the
// config's github_user, then the request's import_user (github_user is an
// alias from Slicer's older API examples; naming two users is ErrInvalid).
func githubUsers(config string, req api.CreateNodeRequest) ([]githubUser, error) {
	field, user := "import_user", req.ImportUser
	switch {
	case user == "":
		field, user = "github_user", req.GitHubUser
	case req.GitHubUser != "" && req.GitHubUser != user:
		return nil, fmt.Errorf("%w: import_user %q and github_user %q name two users (github_user is an alias of import_user)", api.ErrInvalid, user, req.GitHubUser)
	}
	var users []githubUser
	if config != "" {
		users = append(users, githubUser{config, "config github_user"})
	}
	if user != "" && user != config {
		users = append(users, githubUser{user, field})
	}
	return users, nil
}

// uniqueKeys drops repeated keys, keeping the first of each.
func uniqueKeys(keys []string) []string {
	out := []string{}
	for _, k := range keys {
		if !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	return out
}

// deliverBootData hands the guest agent, once it answers, its identity
// when id is set (a restored guest's, identity.go), the host's clock (a
// restored guest's stood still while it was suspended), the VM's secrets
// and then fb (in that order, so that userdata finds the secrets),
// for the life of the machine. The agent acts on fb once per disk, so
// delivering it again on a relaunch or re-attach is harmless. A failure is
// logged, not fatal. The channel is closed once both are delivered, have
// failed, or the machine's life has ended.
func (m *Manager) deliverBootData(life context.Context, in *instance, client *agent.Client, id *agent.Identity, fb agent.FirstBoot) <-chan struct{} {
	in.mu.Lock()
	log := m.log.With("vm", in.rec.Hostname)
	in.mu.Unlock()
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := client.WaitReady(life); err != nil {
			return // the VM went away first
		}
		ctx, cancel := context.WithTimeout(life, time.Minute)
		defer cancel()
		if id != nil {
			giveIdentity(ctx, log, client, *id)
		}
		syncClock(ctx, log, client)
		if err := m.pushSecrets(ctx, in, client); err != nil && life.Err() == nil {
			log.Warn("deliver secrets", "err", err)
		}
		in.mu.Lock()
		pooled := in.pool
		in.mu.Unlock()
		if pooled {
			return // a warm pool VM gets its first-boot data when it is taken
		}
		if err := client.FirstBoot(ctx, fb); err != nil && life.Err() == nil {
			log.Warn("deliver first-boot data", "err", err)
		}
	}()
	return done
}

// waitUserdata blocks until the guest reports its userdata has run.
func (m *Manager) waitUserdata(ctx context.Context, in *instance, timeout time.Duration) error {
	if timeout == 0 {
		timeout = DefaultWaitTimeout
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		hctx, hcancel := context.WithTimeout(wctx, healthTimeout)
		h, err := in.agent.Health(hctx)
		hcancel()
		if err == nil && h.UserdataRan {
			return nil
		}
		select {
		case <-wctx.Done():
			if ctx.Err() != nil {
				return fmt.Errorf("vm %q: create aborted while waiting for userdata: %w", in.rec.Hostname, ctx.Err())
			}
			return fmt.Errorf("vm %q: userdata not done within %s: %w", in.rec.Hostname, timeout, api.ErrTimeout)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// syncClock sets the guest's wall clock to the host's. An agent that
// cannot (not init) is left alone; a failure is logged.
func syncClock(ctx context.Context, log *slog.Logger, client *agent.Client) {
	err := client.SetClock(ctx, time.Now())
	switch {
	case errors.Is(err, api.ErrNotImplemented):
		log.Debug("guest agent does not set its clock", "err", err)
	case err != nil && ctx.Err() == nil:
		log.Warn("set guest clock", "err", err)
	}
}
