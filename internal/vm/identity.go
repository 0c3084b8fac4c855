package vm

import (
	"context"
	"crypto/rand"
	"errors"
	"log/slog"

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
	id := agent.Identity{Hostname: hostname, Entropy: entropy}
	if plan != nil {
		id.Network = &agent.Network{
			Device: guestNIC, Address: plan.Guest.Address, Gateway: plan.Guest.Gateway, DNS: plan.Guest.DNS,
		}
	}
	return id
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
