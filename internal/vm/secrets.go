package vm

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/agent"
	"github.com/openslicer/openslicer/internal/hypervisor"
	"github.com/openslicer/openslicer/internal/secrets"
	"github.com/openslicer/openslicer/internal/vmstate"
)

// Secrets reach a guest's /run/slicer/secrets two ways. The daemon pushes
// a VM's whole set when its agent first answers after a boot, restore or
// re-attach (before first-boot data, so that userdata finds them), and to
// every running VM whenever the store changes (SyncSecrets). The guest can
// also pull its set (`slicer-agent secrets sync`): the VM's agent client
// answers that with the same set.
//
// A VM's set is the secrets its create request named, as they are now
// (a deleted one drops out), or every secret when the request named none.

// SecretSource is where the Manager reads secrets from
// (internal/secrets.Store). Select returns the named secrets with their
// values, every secret when names is nil.
type SecretSource interface {
	Select(names []string) ([]secrets.Entry, error)
}

// secretPushTimeout bounds one push of a VM's secrets. A push to a guest
// that is still booting waits in the channel until its agent is up.
const secretPushTimeout = 30 * time.Second

// checkSecrets makes sure every secret a create request names exists: an
// unknown name is ErrInvalid naming all of them; naming any without a
// secret store is ErrNotImplemented.
func (m *Manager) checkSecrets(names []string) error {
	if len(names) == 0 {
		return nil
	}
	if m.opt.Secrets == nil {
		return fmt.Errorf("secrets: this daemon has no secret store: %w", api.ErrNotImplemented)
	}
	all, err := m.opt.Secrets.Select(nil)
	if err != nil {
		return fmt.Errorf("read secrets: %w", err)
	}
	if missing := missingSecrets(all, names); len(missing) > 0 {
		return fmt.Errorf("%w: secrets not found: %s", api.ErrInvalid, strings.Join(missing, ", "))
	}
	return nil
}

// secretScope is what a VM's record keeps of its create request's list:
// the names sorted and without duplicates, or nil (every secret) when the
// list is empty.
func secretScope(names []string) []string {
	if len(names) == 0 {
		return nil
	}
	out := slices.Clone(names)
	slices.Sort(out)
	return slices.Compact(out)
}

// missingSecrets returns the names that no entry of all has, sorted and
// without duplicates.
func missingSecrets(all []secrets.Entry, names []string) []string {
	have := make(map[string]bool, len(all))
	for _, e := range all {
		have[e.Name] = true
	}
	var out []string
	for _, name := range secretScope(names) {
		if !have[name] {
			out = append(out, name)
		}
	}
	return out
}

// scopedFiles returns the entries of all that scope names (every entry
// when scope is nil) as the agent takes them.
func scopedFiles(all []secrets.Entry, scope []string) []agent.SecretFile {
	out := []agent.SecretFile{}
	for _, e := range all {
		if scope != nil && !slices.Contains(scope, e.Name) {
			continue
		}
		out = append(out, agent.SecretFile{Name: e.Name, Data: e.Data, Permissions: e.Permissions, UID: e.UID, GID: e.GID})
	}
	return out
}

// vmSecrets reads the current set of in from the store.
func (m *Manager) vmSecrets(in *instance) ([]agent.SecretFile, error) {
	all, err := m.opt.Secrets.Select(nil)
	if err != nil {
		return nil, fmt.Errorf("read secrets: %w", err)
	}
	in.mu.Lock()
	scope := in.rec.Secrets
	if in.rec.NoSecrets {
		scope = []string{} // granted none (a fork asked so)
	}
	in.mu.Unlock()
	return scopedFiles(all, scope), nil
}

// newAgent returns the agent client of in's machine. With a secret store
// it answers the guest's pull of its secrets.
func (m *Manager) newAgent(in *instance, machine hypervisor.Machine) *agent.Client {
	in.mu.Lock()
	hostname := in.rec.Hostname
	in.mu.Unlock()
	client := agent.NewClient(machine.DialAgent, m.log.With("vm", hostname))
	if m.opt.Secrets != nil {
		client.ServeGuest(agent.HostSecretsHandler(func(context.Context) ([]agent.SecretFile, error) {
			return m.vmSecrets(in)
		}))
	}
	return client
}

// pushSecrets sends in's current set to its agent, client. Pushes to one
// VM take turns and each reads the store afresh, so the last one carries
// the newest set whatever order they started in. Without a secret store
// it does nothing.
func (m *Manager) pushSecrets(ctx context.Context, in *instance, client *agent.Client) error {
	if m.opt.Secrets == nil {
		return nil
	}
	in.secretsMu.Lock()
	defer in.secretsMu.Unlock()
	files, err := m.vmSecrets(in)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, secretPushTimeout)
	defer cancel()
	if err := client.PutSecrets(ctx, files); err != nil {
		return fmt.Errorf("push secrets: %w", err)
	}
	return nil
}

// SyncSecrets pushes its current set to every running VM, all at once,
// after a change to the store. A VM that is not running is skipped: a
// stopped or suspended one gets its set when its agent next comes up, a
// paused one at the next change or pull. The errors of VMs that could not
// take it are joined; the others have theirs.
func (m *Manager) SyncSecrets(ctx context.Context) error {
	if m.opt.Secrets == nil {
		return nil
	}
	type target struct {
		in     *instance
		host   string
		client *agent.Client
	}
	var targets []target
	m.mu.Lock()
	for _, in := range m.vms {
		in.mu.Lock()
		if vmstate.Allowed(vmstate.SyncSecrets, in.stateLocked()) && in.agent != nil {
			targets = append(targets, target{in, in.rec.Hostname, in.agent})
		}
		in.mu.Unlock()
	}
	m.mu.Unlock()

	return allAtOnce(targets, func(t target) error {
		if err := m.pushSecrets(ctx, t.in, t.client); err != nil {
			return fmt.Errorf("vm %q: %w", t.host, err)
		}
		return nil
	})
}

// resyncAfterResume sets the guest's clock, which stood still while it
// was paused, and pushes its secrets, which a change made meanwhile
// skipped; in the background, so that resume answers at once.
func (m *Manager) resyncAfterResume(ctx context.Context, hostname string) {
	in, err := m.get(hostname)
	if err != nil {
		return
	}
	in.mu.Lock()
	client := in.agent
	in.mu.Unlock()
	if client == nil {
		return
	}
	log := m.log.With("vm", hostname)
	go func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), secretPushTimeout)
		defer cancel()
		syncClock(ctx, log, client)
		if err := m.pushSecrets(ctx, in, client); err != nil {
			log.Warn("push secrets after resume", "err", err)
		}
	}()
}
