package guest

import (
	"fmt"
	"net"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/agent"
	"github.com/openslicer/openslicer/internal/guest/sysconf"
)

// The system routes (PUT /v1/identity, POST /v1/power): what the host asks
// of the guest's system rather than of its programs. What they decide is
// here, pure; system_linux.go serves them and hands the work to the
// setters only init has (Init).

// identityOf checks an identity request and returns what the guest
// applies; a bad field is ErrInvalid, and then nothing is applied.
func identityOf(req agent.Identity) (sysconf.Identity, error) {
	id := sysconf.Identity{Hostname: req.Hostname, MachineID: req.MachineID, Entropy: req.Entropy}
	if n := req.Network; n != nil {
		id.Network = &sysconf.Network{Device: n.Device, Address: n.Address, Gateway: n.Gateway, DNS: n.DNS}
		if n.MAC != "" {
			mac, err := net.ParseMAC(n.MAC)
			if err != nil {
				return sysconf.Identity{}, fmt.Errorf("%w: identity: network mac %q: %w", api.ErrInvalid, n.MAC, err)
			}
			id.Network.MAC = mac
		}
	}
	if l := len(req.Entropy); l > 0 && (l < agent.MinEntropy || l > agent.MaxEntropy) {
		return sysconf.Identity{}, fmt.Errorf("%w: entropy of %d bytes: want %d to %d", api.ErrInvalid, l, agent.MinEntropy, agent.MaxEntropy)
	}
	if err := id.Check(); err != nil {
		return sysconf.Identity{}, fmt.Errorf("%w: identity: %w", api.ErrInvalid, err)
	}
	return id, nil
}

// powerActionOf checks a power request and returns its action.
func powerActionOf(req agent.Power) (string, error) {
	switch req.Action {
	case agent.PowerOff, agent.Reboot:
		return req.Action, nil
	}
	return "", fmt.Errorf("%w: power action %q: want %q or %q", api.ErrInvalid, req.Action, agent.PowerOff, agent.Reboot)
}
