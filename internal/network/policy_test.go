package network

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/config"
)

func TestPolicyInheritance(t *testing.T) {
	tests := []struct {
		name        string
		allow, drop []string
		override    *api.CreateNodeNetworkPolicy
		want        api.VMNetworkPolicy
		source      string
	}{
		{name: "group lists", allow: []string{"10.0.0.0/8"}, drop: []string{"0.0.0.0/0"},
			want: api.VMNetworkPolicy{Allow: []string{"10.0.0.0/8"}, Drop: []string{"0.0.0.0/0"}}, source: SourceHostGroup},
		{name: "nothing set", want: api.VMNetworkPolicy{Allow: []string{}, Drop: []string{}}, source: SourceHostGroup},
		{name: "nil lists inherit", allow: []string{"10.0.0.0/8"}, drop: []string{"0.0.0.0/0"},
			override: &api.CreateNodeNetworkPolicy{},
			want:     api.VMNetworkPolicy{Allow: []string{"10.0.0.0/8"}, Drop: []string{"0.0.0.0/0"}}, source: SourceVM},
		{name: "empty list clears", allow: []string{"10.0.0.0/8"}, drop: []string{"0.0.0.0/0"},
			override: &api.CreateNodeNetworkPolicy{Allow: []string{}},
			want:     api.VMNetworkPolicy{Allow: []string{}, Drop: []string{"0.0.0.0/0"}}, source: SourceVM},
		{name: "list replaces", allow: []string{"10.0.0.0/8"},
			override: &api.CreateNodeNetworkPolicy{Allow: []string{"1.1.1.1:53"}, Drop: []string{"0.0.0.0/0"}},
			want:     api.VMNetworkPolicy{Allow: []string{"1.1.1.1:53"}, Drop: []string{"0.0.0.0/0"}}, source: SourceVM},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := NewPolicy(tt.allow, tt.drop, tt.override)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, p.Effective); diff != "" {
				t.Errorf("effective policy (-want +got):\n%s", diff)
			}
			if p.Source() != tt.source {
				t.Errorf("Source() = %q, want %q", p.Source(), tt.source)
			}
		})
	}
}

// The description of GET /vm/{h} matches the SDK's fixture byte for byte.
func TestDescriptionJSON(t *testing.T) {
	g := isolatedGroup("vm", func(n *config.Network) { n.Allow = []string{"10.0.0.0/8"} })
	p, err := PlanIsolated(g, "vm-1", 0, &api.CreateNodeNetworkPolicy{Allow: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := json.Marshal(p.Description())
	if err != nil {
		t.Fatal(err)
	}
	want := `{"mode":"isolated","policy_source":"vm","host_group":{"allow":["10.0.0.0/8"],"drop":[]},"override":{"allow":[]},"effective":{"allow":[],"drop":[]}}`
	if string(got) != want {
		t.Errorf("Description() =\n%s\nwant\n%s", got, want)
	}

	b, err := PlanBridge(bridgeGroup(nil), "vm-1", 0)
	if err != nil {
		t.Fatal(err)
	}
	got, _ = json.Marshal(b.Description())
	if want := `{"mode":"bridge","host_group":{"allow":[],"drop":[]},"effective":{"allow":[],"drop":[]}}`; string(got) != want {
		t.Errorf("bridge Description() = %s, want %s", got, want)
	}
}

// A plan survives a round trip through JSON, as the daemon records it.
func TestPlanJSONRoundTrip(t *testing.T) {
	g := isolatedGroup("vm", func(n *config.Network) { n.Drop = []string{"0.0.0.0/0"} })
	p, err := PlanIsolated(g, "vm-1", 3, &api.CreateNodeNetworkPolicy{Allow: []string{"1.1.1.1:53"}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var back Plan
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if ruleset(testOwner, back).String() != ruleset(testOwner, p).String() {
		t.Errorf("ruleset changed through JSON:\n%s", b)
	}
	if diff := cmp.Diff(p.Description(), back.Description()); diff != "" {
		t.Errorf("description changed through JSON (-before +after):\n%s", diff)
	}
}

// egress returns the egress rules of a policy as nft strings.
func egress(t *testing.T, allow, drop []string) []string {
	t.Helper()
	p, err := NewPolicy(allow, drop, nil)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range egressRules("v", "", p) {
		r.Comment = ""
		out = append(out, r.String())
	}
	return out
}

func TestEgressRules(t *testing.T) {
	tests := []struct {
		name        string
		allow, drop []string
		want        []string
	}{
		{name: "neither list: everything allowed"},
		{name: "only drop: default allow", drop: []string{"192.168.1.0/24", "10.0.0.1"},
			want: []string{
				`iifname "v" ip daddr 10.0.0.1 drop`,
				`iifname "v" ip daddr 192.168.1.0/24 drop`,
			}},
		{name: "only allow: default deny", allow: []string{"1.1.1.1:53", "10.0.0.0/8"},
			want: []string{
				`iifname "v" ip daddr 1.1.1.1 tcp dport 53 accept`,
				`iifname "v" ip daddr 1.1.1.1 udp dport 53 accept`,
				`iifname "v" ip daddr 10.0.0.0/8 accept`,
				`iifname "v" drop`,
			}},
		{name: "both: a narrow allow inside a wide drop (proxy)", allow: []string{"192.168.222.1:3128"}, drop: []string{"0.0.0.0/0"},
			want: []string{
				`iifname "v" ip daddr 192.168.222.1 tcp dport 3128 accept`,
				`iifname "v" ip daddr 192.168.222.1 udp dport 3128 accept`,
				`iifname "v" ip daddr 0.0.0.0/0 drop`,
			}},
		{name: "both: a narrow drop inside a wide allow (the sandbox config blocks the LAN)",
			allow: []string{"0.0.0.0/0"}, drop: []string{"192.168.1.0/24"},
			want: []string{
				`iifname "v" ip daddr 192.168.1.0/24 drop`,
				`iifname "v" ip daddr 0.0.0.0/0 accept`,
			}},
		{name: "both: a port beats the same prefix, a tie goes to allow",
			allow: []string{"10.0.0.0/8", "10.1.1.1"}, drop: []string{"10.1.1.1", "10.0.0.0/8:22"},
			want: []string{
				`iifname "v" ip daddr 10.1.1.1 accept`,
				`iifname "v" ip daddr 10.1.1.1 drop`,
				`iifname "v" ip daddr 10.0.0.0/8 tcp dport 22 drop`,
				`iifname "v" ip daddr 10.0.0.0/8 udp dport 22 drop`,
				`iifname "v" ip daddr 10.0.0.0/8 accept`,
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, egress(t, tt.allow, tt.drop)); diff != "" {
				t.Errorf("egress rules (-want +got):\n%s", diff)
			}
		})
	}
}
