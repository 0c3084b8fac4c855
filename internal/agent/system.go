package agent

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"time"

	"github.com/openslicer/openslicer/api"
)

// The system routes: what the host once did through the guest's userland
// (busybox poweroff and reboot) or only on the kernel command line
// (hostname, address), now agent requests, so that the host assumes no
// tool in the guest and a restored or forked memory image can be given an
// identity of its own.

// Power actions, the values of Power.Action.
const (
	PowerOff = "poweroff"
	Reboot   = "reboot"
)

// Power is the body of POST /v1/power.
type Power struct {
	// Action is PowerOff or Reboot.
	Action string `json:"action"`
}

// Identity is the body of PUT /v1/identity: who the guest is. Each field
// left empty is left as the guest has it; what is given is applied in the
// order of the fields, and the first failure ends the request.
type Identity struct {
	// Hostname is set as the kernel's hostname and written to
	// /etc/hostname.
	Hostname string `json:"hostname,omitempty"`
	// Network replaces the addresses and default route of its device, and
	// /etc/resolv.conf when it names DNS servers.
	Network *Network `json:"network,omitempty"`
	// MachineID is written to /etc/machine-id: 32 lower-case hex digits,
	// not all zero.
	MachineID string `json:"machine_id,omitempty"`
	// Entropy is mixed into the guest kernel's random pool and credited
	// (RNDADDENTROPY), after which the kernel's RNG is reseeded at once
	// (RNDRESEEDCRNG): two guests restored from one memory image then never
	// share what /dev/urandom gives. At least MinEntropy bytes, at most
	// MaxEntropy (base64 in JSON).
	Entropy []byte `json:"entropy,omitempty"`
}

// Bounds of Identity.Entropy.
const (
	MinEntropy = 32
	MaxEntropy = 512
)

// Network is the guest's IPv4 network on one device.
type Network struct {
	// Device is the NIC's name; empty means eth0.
	Device string `json:"device,omitempty"`
	// Address is the guest's IPv4 address with its network's length,
	// e.g. 192.168.137.2/24. Every other IPv4 address of the device is
	// removed.
	Address netip.Prefix `json:"address"`
	// Gateway, when valid, is the default route's, replacing the one the
	// guest had.
	Gateway netip.Addr `json:"gateway,omitzero"`
	// DNS servers, when given, are written to /etc/resolv.conf.
	DNS []netip.Addr `json:"dns,omitempty"`
	// MAC, when set (e.g. 02:00:00:00:00:01), becomes the device's
	// hardware address first: a clone of a memory image wakes with its
	// image's.
	MAC string `json:"mac,omitempty"`
}

// Power asks the guest to power off (action PowerOff) or reboot
// (Reboot). The agent answers before it acts, so a nil error means the
// guest took the request; the machine ends soon after. An agent that is
// not the guest's init, nor beside one, answers with an error that
// unwraps to api.ErrNotImplemented; an agent older than the route, with
// one that unwraps to api.ErrNotFound.
func (c *Client) Power(ctx context.Context, action string) error {
	switch action {
	case PowerOff, Reboot:
	default:
		return fmt.Errorf("%w: power action %q: want %s or %s", api.ErrInvalid, action, PowerOff, Reboot)
	}
	return c.doJSON(ctx, http.MethodPost, PathPower, Power{Action: action}, nil)
}

// Release asks the agent to let go of the channel before the machine is
// saved (a suspend or a capture): it answers, then ends this session and
// closes its end of the channel at once, rather than when it notices the
// host leave, and keeps it closed a moment (ReleaseQuiet) so that the
// host sees it closed. The client's session is of no use after it. An
// agent older than the route answers with an error that unwraps to
// api.ErrNotFound.
func (c *Client) Release(ctx context.Context) error {
	return c.doJSON(ctx, http.MethodPost, PathRelease, nil, nil)
}

// ReleaseQuiet is how long a released agent keeps its channel closed
// before it opens it again for the next host.
const ReleaseQuiet = 50 * time.Millisecond

// SetIdentity gives the guest the identity id names. An agent that is not
// init answers with an error that unwraps to api.ErrNotImplemented; a bad
// field, with api.ErrInvalid (nothing applied).
func (c *Client) SetIdentity(ctx context.Context, id Identity) error {
	return c.doJSON(ctx, http.MethodPut, PathIdentity, id, nil)
}
