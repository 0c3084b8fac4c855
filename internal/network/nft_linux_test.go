package network

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

func TestRuleExprs(t *testing.T) {
	meta := func(k expr.MetaKey) *expr.Meta { return &expr.Meta{Key: k, Register: 1} }
	cmpEq := func(b ...byte) *expr.Cmp { return &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: b} }
	name := func(n string) []byte { return ifname(n) }
	ipv4 := []expr.Any{meta(expr.MetaKeyNFPROTO), cmpEq(unix.NFPROTO_IPV4)}
	tests := []struct {
		name string
		rule Rule
		want []expr.Any
	}{
		{
			name: "allow a port in a CIDR",
			rule: Rule{IIF: "sbox-1", Daddr: netip.MustParsePrefix("10.0.0.0/8"), Proto: "udp", Dport: 53, Verdict: Accept},
			want: append(append([]expr.Any{meta(expr.MetaKeyIIFNAME), cmpEq(name("sbox-1")...)}, ipv4...),
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
				&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: []byte{255, 0, 0, 0}, Xor: []byte{0, 0, 0, 0}},
				cmpEq(10, 0, 0, 0),
				meta(expr.MetaKeyL4PROTO), cmpEq(unix.IPPROTO_UDP),
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
				cmpEq(0, 53),
				&expr.Verdict{Kind: expr.VerdictAccept}),
		},
		{
			name: "anti-spoofing on a single address",
			rule: Rule{IIF: "v", Saddr: netip.MustParsePrefix("10.0.0.6/32"), NotSaddr: true, Verdict: Drop},
			want: append(append([]expr.Any{meta(expr.MetaKeyIIFNAME), cmpEq(name("v")...)}, ipv4...),
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
				&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{10, 0, 0, 6}},
				&expr.Verdict{Kind: expr.VerdictDrop}),
		},
		{
			name: "replies",
			rule: Rule{OIF: "v", Established: true, Verdict: Accept},
			want: []expr.Any{
				meta(expr.MetaKeyOIFNAME), cmpEq(name("v")...),
				&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
				&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
					Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED), Xor: []byte{0, 0, 0, 0}},
				&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{0, 0, 0, 0}},
				&expr.Verdict{Kind: expr.VerdictAccept},
			},
		},
		{
			name: "masquerade",
			rule: Rule{OIF: "brvm0", NotOIF: true, Saddr: netip.MustParsePrefix("192.168.137.0/24"), Verdict: Masquerade},
			want: append(append([]expr.Any{meta(expr.MetaKeyOIFNAME), &expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: name("brvm0")}}, ipv4...),
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
				&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: []byte{255, 255, 255, 0}, Xor: []byte{0, 0, 0, 0}},
				cmpEq(192, 168, 137, 0),
				&expr.Masq{}),
		},
		{
			name: "IPv6",
			rule: Rule{IIF: "v", IPv6: true, Verdict: Drop},
			want: []expr.Any{meta(expr.MetaKeyIIFNAME), cmpEq(name("v")...), meta(expr.MetaKeyNFPROTO), cmpEq(unix.NFPROTO_IPV6), &expr.Verdict{Kind: expr.VerdictDrop}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, ruleExprs(tt.rule)); diff != "" {
				t.Errorf("ruleExprs(%s) (-want +got):\n%s", tt.rule, diff)
			}
		})
	}
}

func TestIfname(t *testing.T) {
	b := ifname("sbox-1")
	if len(b) != 16 || string(b[:6]) != "sbox-1" || b[6] != 0 || b[15] != 0 {
		t.Errorf("ifname() = %q, want the name NUL-padded to 16 bytes", b)
	}
}
