package vm

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/agent"
	"github.com/openslicer/openslicer/internal/network"
)

// A guest learns who it is from its kernel command line when it boots
// (slicer.hostname=, ip=). A guest restored from a memory image did not
// boot: it wakes as whoever the image was, its RNG in the state the image
// froze. So after a restore the daemon hands it its identity through the
// agent (PUT /v1/identity): its hostname, its network, and fresh entropy
// that the guest credits and reseeds its kernel RNG from, so that no two
// guests restored from one image share random numbers.

// identityEntropy is how many random bytes a restored guest is given: a
// full reseed of the kernel's ChaCha key.
const identityEntropy = 64

// restoredIdentity is the identity a VM named hostname, with network plan
// (nil: none), is given after a restore, entropy its fresh random bytes.
// Its machine id is left alone: it is the same machine.
func restoredIdentity(hostname string, plan *network.Plan, entropy []byte) agent.Identity {
	return agent.Identity{Hostname: hostname, Entropy: entropy, Network: guestNetwork(plan, false)}
}

// guestNetwork is the identity's network for plan (nil: none). withMAC
// includes the plan's MAC, which a clone must take: it wakes with the
// MAC of the machine it was captured from.
func guestNetwork(plan *network.Plan, withMAC bool) *agent.Network {
	if plan == nil {
		return nil
	}
	n := &agent.Network{Device: guestNIC, Address: plan.Guest.Address, Gateway: plan.Guest.Gateway, DNS: plan.Guest.DNS}
	if withMAC {
		n.MAC = plan.MAC
	}
	return n
}

// newEntropy returns identityEntropy bytes from the host's RNG.
func newEntropy() []byte {
	b := make([]byte, identityEntropy)
	rand.Read(b) // never fails (crypto/rand panics rather)
	return b
}

// giveIdentity hands the guest its identity. An agent that cannot (not
// init, or older than the route) is left alone; a failure is logged.
func giveIdentity(ctx context.Context, log *slog.Logger, client *agent.Client, id agent.Identity) {
	err := client.SetIdentity(ctx, id)
	switch {
	case err == nil:
		log.Debug("guest identity set", "hostname", id.Hostname, "network", id.Network != nil)
	case errors.Is(err, api.ErrNotImplemented), errors.Is(err, api.ErrNotFound):
		log.Warn("guest agent does not take an identity: the restored guest keeps its image's", "err", err)
	case ctx.Err() == nil:
		log.Warn("set guest identity", "err", err)
	}
}

// identityTimeout bounds giving a restored guest its identity.
const identityTimeout = time.Minute

// freshIdentity gives a VM that did not boot (a clone restored from a
// snapshot template, or a hot fork, whose memory was another machine's)
// an identity of its own before its create answers: its clock set to the
// host's, then, through the agent's identity route, its hostname (the
// kernel's, /etc/hostname, and the /etc/hosts entries naming the
// template), its network when it has one (its MAC, which it woke with
// the captured machine's, its address, default route and DNS), a new
// machine-id, and fresh entropy that the guest credits and reseeds its
// kernel RNG from, so that no two clones share random numbers. Unlike
// after a restore of the same VM, a failure fails the create: two clones
// must never share one identity.
func (m *Manager) freshIdentity(ctx context.Context, in *instance) error {
	in.mu.Lock()
	host, client, plan := guestName(in.rec), in.agent, in.plan
	in.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, identityTimeout)
	defer cancel()
	syncClock(ctx, m.log.With("vm", host), client)
	id := agent.Identity{Hostname: host, MachineID: newMachineID(), Entropy: newEntropy(), Network: guestNetwork(plan, true)}
	if err := client.SetIdentity(ctx, id); err != nil {
		return fmt.Errorf("vm %q: give the restored guest its identity: %w", host, err)
	}
	return nil
}

// releaseTimeout bounds asking a guest agent to let go of its channel.
const releaseTimeout = 2 * time.Second

// releaseAgent asks the guest agent behind client to let go of its channel
// (agent.Client.Release) just before its running machine is saved (a
// suspend, a memory commit, a template's capture), so that the backend's
// wait for the guest to close the channel ends at once rather than when
// the guest notices its host leave, and the saved guest waits for its next
// host. An agent that does not answer is left to notice, as before: the
// failure is logged, and the save goes on.
func releaseAgent(ctx context.Context, log *slog.Logger, client *agent.Client) {
	if client == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, releaseTimeout)
	defer cancel()
	if err := client.Release(ctx); err != nil {
		log.Debug("guest agent did not take the release; the save waits for it to notice its host leave", "err", err)
	}
}
