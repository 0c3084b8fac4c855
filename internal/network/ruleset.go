package network

import (
	"fmt"
	"net/netip"
	"strings"
)

// DefaultPrefix begins the name of every object the daemon creates.
const DefaultPrefix = "slicer"

// linkLocal is never reachable from an isolated VM: it is the host's own
// link-local space, and holds cloud metadata services (169.254.169.254).
var linkLocal = netip.MustParsePrefix("169.254.0.0/16")

// Verdicts.
const (
	Accept     = "accept"
	Drop       = "drop"
	Masquerade = "masquerade"
)

// Table is an nftables table as data: what Ruleset decides and the Linux
// layer applies in one batch. Its String is nft syntax.
type Table struct {
	Family string // always "inet"
	Name   string
	Chains []Chain
}

// Chain is a base chain with policy accept: only its rules drop.
type Chain struct {
	Name     string
	Type     string // "filter" or "nat"
	Hook     string // "input", "forward" or "postrouting"
	Priority int
	Rules    []Rule
}

// Rule matches a packet on every field that is set, then applies Verdict.
type Rule struct {
	IIF    string
	OIF    string
	NotOIF bool // OIF must differ
	// Established matches ct state established,related.
	Established bool
	IPv6        bool // the packet is IPv6
	Saddr       netip.Prefix
	NotSaddr    bool // Saddr must not match
	Daddr       netip.Prefix
	// Proto ("tcp" or "udp") with Dport matches a destination port.
	Proto   string
	Dport   uint16
	Verdict string
	Comment string
}

// ruleset is the nftables table of plan p, named by o: the group's NAT
// table for a bridge plan, the VM's own table for an isolated plan.
func ruleset(o owner, p Plan) Table {
	if p.Mode == ModeBridge {
		return Table{Family: "inet", Name: o.groupTable(p.Group), Chains: []Chain{{
			Name: "postrouting", Type: "nat", Hook: "postrouting", Priority: 100,
			Rules: []Rule{{
				Saddr: p.Guest.Address.Masked(), OIF: p.Bridge, NotOIF: true, Verdict: Masquerade,
				Comment: o.ruleTag() + " group " + p.Group + ": egress NAT",
			}},
		}}}
	}
	veth, vm := o.hostVeth(p.VM), p.Guest.Address.Addr()
	tag := o.ruleTag() + " vm " + p.VM + ": "
	input := []Rule{
		{IIF: veth, Established: true, Verdict: Accept, Comment: tag + "replies to the host"},
		{IIF: veth, Verdict: Drop, Comment: tag + "no access to the host"},
	}
	forward := []Rule{
		{OIF: veth, Established: true, Verdict: Accept, Comment: tag + "replies to the VM"},
		{OIF: veth, Verdict: Drop, Comment: tag + "no connections into the VM"},
		{IIF: veth, Established: true, Verdict: Accept, Comment: tag + "established"},
		{IIF: veth, IPv6: true, Verdict: Drop, Comment: tag + "no IPv6"},
		{IIF: veth, Saddr: netip.PrefixFrom(vm, 32), NotSaddr: true, Verdict: Drop, Comment: tag + "spoofed source"},
		{IIF: veth, Daddr: linkLocal, Verdict: Drop, Comment: tag + "no link-local"},
	}
	forward = append(forward, egressRules(veth, tag, p.Policy)...)
	return Table{Family: "inet", Name: o.vmTable(p.VM), Chains: []Chain{
		{Name: "input", Type: "filter", Hook: "input", Priority: 0, Rules: input},
		{Name: "forward", Type: "filter", Hook: "forward", Priority: 0, Rules: forward},
		{Name: "postrouting", Type: "nat", Hook: "postrouting", Priority: 100, Rules: []Rule{{
			Saddr: netip.PrefixFrom(vm, 32), OIF: veth, NotOIF: true, Verdict: Masquerade, Comment: tag + "egress NAT",
		}}},
	}}
}

// egressRules enforces the policy on traffic from the VM.
func egressRules(veth, tag string, p Policy) []Rule {
	ordered, defaultDrop := p.rules()
	var out []Rule
	for _, r := range ordered {
		verdict, list := Drop, "drop "
		if r.Allow {
			verdict, list = Accept, "allow "
		}
		entry := prefixString(r.Prefix)
		if r.Port != 0 {
			entry += fmt.Sprintf(":%d", r.Port)
		}
		rule := Rule{IIF: veth, Daddr: r.Prefix, Verdict: verdict, Comment: tag + list + entry}
		if r.Port == 0 {
			out = append(out, rule)
			continue
		}
		for _, proto := range []string{"tcp", "udp"} {
			rule.Proto, rule.Dport = proto, r.Port
			out = append(out, rule)
		}
	}
	if defaultDrop {
		out = append(out, Rule{IIF: veth, Verdict: Drop, Comment: tag + "not allowed"})
	}
	return out
}

func (t Table) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "table %s %s {\n", t.Family, t.Name)
	for _, c := range t.Chains {
		fmt.Fprintf(&b, "\tchain %s {\n\t\ttype %s hook %s priority %d; policy accept;\n", c.Name, c.Type, c.Hook, c.Priority)
		for _, r := range c.Rules {
			fmt.Fprintf(&b, "\t\t%s\n", r)
		}
		b.WriteString("\t}\n")
	}
	b.WriteString("}\n")
	return b.String()
}

// String is the rule in nft syntax, its matches in the order they are
// evaluated.
func (r Rule) String() string {
	var parts []string
	add := func(format string, a ...any) { parts = append(parts, fmt.Sprintf(format, a...)) }
	not := func(b bool) string {
		if b {
			return "!= "
		}
		return ""
	}
	if r.IIF != "" {
		add("iifname %q", r.IIF)
	}
	if r.OIF != "" {
		add("oifname %s%q", not(r.NotOIF), r.OIF)
	}
	if r.Established {
		add("ct state established,related")
	}
	if r.IPv6 {
		add("meta nfproto ipv6")
	}
	if r.Saddr.IsValid() {
		add("ip saddr %s%s", not(r.NotSaddr), prefixString(r.Saddr))
	}
	if r.Daddr.IsValid() {
		add("ip daddr %s", prefixString(r.Daddr))
	}
	if r.Proto != "" {
		add("%s dport %d", r.Proto, r.Dport)
	}
	add("%s", r.Verdict)
	if r.Comment != "" {
		add("comment %q", r.Comment)
	}
	return strings.Join(parts, " ")
}

// prefixString writes a single address without its /32, as nft does.
func prefixString(p netip.Prefix) string {
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}
