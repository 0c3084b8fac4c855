package network

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/config"
)

// Policy sources, as GET /vm/{h} reports them.
const (
	SourceHostGroup = "host_group"
	SourceVM        = "vm"
)

// Policy is an isolated VM's egress policy: the host group's lists, the
// create request's override, and the lists in force.
//
// The effective lists are the override's where it gives one (a nil list
// inherits the group's, an empty list clears it). They are enforced so:
//
//   - neither list: everything is allowed;
//   - only drop: what a drop entry matches is dropped, the rest allowed;
//   - only allow: what an allow entry matches is allowed, the rest dropped;
//   - both: the most specific matching entry decides (the longer prefix;
//     at equal prefixes an entry with a port before one without; at a full
//     tie allow before drop) and unmatched traffic is allowed.
//
// With both lists this is "allow first, then drop" whenever the allow
// entries are narrower than the drops (drop 0.0.0.0/0 with allow
// proxy:3128), and it also gives the documented sandbox config (allow
// 0.0.0.0/0, drop the LAN) its documented meaning: the LAN is blocked.
//
// Entries are CIDR, IP or IP:port (config.ParseRule); a port matches TCP
// and UDP. VMs have IPv4 only, so IPv6 entries are rejected.
type Policy struct {
	Group     api.VMNetworkPolicy          `json:"host_group"`
	Override  *api.CreateNodeNetworkPolicy `json:"override,omitempty"`
	Effective api.VMNetworkPolicy          `json:"effective"`
}

// NewPolicy resolves the group's allow and drop lists with override, and
// checks every effective entry. Bad entries wrap api.ErrInvalid.
func NewPolicy(allow, drop []string, override *api.CreateNodeNetworkPolicy) (Policy, error) {
	p := Policy{
		Group:     api.VMNetworkPolicy{Allow: nonNil(allow), Drop: nonNil(drop)},
		Override:  override,
		Effective: api.VMNetworkPolicy{Allow: nonNil(allow), Drop: nonNil(drop)},
	}
	where := map[string]string{"allow": "network.allow", "drop": "network.drop"}
	if override != nil {
		if override.Allow != nil {
			p.Effective.Allow, where["allow"] = nonNil(override.Allow), "request network.allow"
		}
		if override.Drop != nil {
			p.Effective.Drop, where["drop"] = nonNil(override.Drop), "request network.drop"
		}
	}
	for _, l := range []struct {
		key     string
		entries []string
	}{{"allow", p.Effective.Allow}, {"drop", p.Effective.Drop}} {
		for i, s := range l.entries {
			r, err := config.ParseRule(s)
			if err == nil && !r.Prefix.Addr().Is4() {
				err = fmt.Errorf("%q is IPv6; VMs have IPv4 only", s)
			}
			if err != nil {
				return Policy{}, fmt.Errorf("%w: %s[%d]: %w", api.ErrInvalid, where[l.key], i, err)
			}
		}
	}
	return p, nil
}

// Source is where the effective lists come from: the VM's override or the
// host group.
func (p Policy) Source() string {
	if p.Override != nil {
		return SourceVM
	}
	return SourceHostGroup
}

// Description is the network part of GET /vm/{h}.
func (p Plan) Description() api.VMNetworkDescription {
	d := api.VMNetworkDescription{
		Mode:      p.Mode,
		HostGroup: clonePolicy(p.Policy.Group),
		Override:  p.Policy.Override,
		Effective: clonePolicy(p.Policy.Effective),
	}
	if p.Mode == ModeIsolated {
		d.Source = p.Policy.Source()
	}
	return d
}

// egressRule is one effective entry with its verdict.
type egressRule struct {
	config.Rule
	Allow bool
}

// rules returns the effective entries in the order they are matched, and
// whether unmatched traffic is dropped. Entries were checked by NewPolicy.
func (p Policy) rules() (ordered []egressRule, defaultDrop bool) {
	for _, s := range p.Effective.Allow {
		r, _ := config.ParseRule(s)
		ordered = append(ordered, egressRule{r, true})
	}
	for _, s := range p.Effective.Drop {
		r, _ := config.ParseRule(s)
		ordered = append(ordered, egressRule{r, false})
	}
	slices.SortStableFunc(ordered, func(a, b egressRule) int {
		return cmp.Or(
			cmp.Compare(b.Prefix.Bits(), a.Prefix.Bits()),
			cmp.Compare(rank(a.Port == 0), rank(b.Port == 0)),
			cmp.Compare(rank(!a.Allow), rank(!b.Allow)),
		)
	})
	return ordered, len(p.Effective.Allow) > 0 && len(p.Effective.Drop) == 0
}

// rank orders false before true.
func rank(b bool) int {
	if b {
		return 1
	}
	return 0
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return slices.Clone(s)
}

func emptyPolicy() api.VMNetworkPolicy {
	return api.VMNetworkPolicy{Allow: []string{}, Drop: []string{}}
}

func clonePolicy(p api.VMNetworkPolicy) api.VMNetworkPolicy {
	return api.VMNetworkPolicy{Allow: nonNil(p.Allow), Drop: nonNil(p.Drop)}
}
