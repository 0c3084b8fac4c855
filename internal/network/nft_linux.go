package network

import (
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

var hooks = map[string]*nftables.ChainHook{
	"input":       nftables.ChainHookInput,
	"forward":     nftables.ChainHookForward,
	"postrouting": nftables.ChainHookPostrouting,
}

var chainTypes = map[string]nftables.ChainType{
	"filter": nftables.ChainTypeFilter,
	"nat":    nftables.ChainTypeNAT,
}

// nft opens an nftables connection in the host namespace.
func (h *Host) nft() (*nftables.Conn, error) {
	c, err := nftables.New(nftables.WithNetNSFd(int(h.ns)))
	if err != nil {
		return nil, fmt.Errorf("open nftables: %w", err)
	}
	return c, nil
}

// applyTable replaces table t as a whole, in one transaction: other
// traffic never sees it half-written, and applying it twice is the same
// as once.
func (h *Host) applyTable(t Table) error {
	c, err := h.nft()
	if err != nil {
		return err
	}
	nt := &nftables.Table{Family: nftables.TableFamilyINet, Name: t.Name}
	c.AddTable(nt)
	c.DelTable(nt)
	c.AddTable(nt)
	accept := nftables.ChainPolicyAccept
	for _, ch := range t.Chains {
		hook, typ := hooks[ch.Hook], chainTypes[ch.Type]
		if hook == nil || typ == "" {
			return fmt.Errorf("table %s: chain %s has an unknown hook %q or type %q", t.Name, ch.Name, ch.Hook, ch.Type)
		}
		nc := c.AddChain(&nftables.Chain{
			Name: ch.Name, Table: nt, Type: typ, Hooknum: hook,
			Priority: nftables.ChainPriorityRef(nftables.ChainPriority(ch.Priority)), Policy: &accept,
		})
		for _, r := range ch.Rules {
			c.AddRule(&nftables.Rule{
				Table: nt, Chain: nc, Exprs: ruleExprs(r),
				UserData: userdata.AppendString(nil, userdata.TypeComment, r.Comment),
			})
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("apply nftables table %s: %w", t.Name, err)
	}
	return nil
}

// tables lists the names of the host's inet tables.
func (h *Host) tables() ([]string, error) {
	c, err := h.nft()
	if err != nil {
		return nil, err
	}
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, fmt.Errorf("list nftables tables: %w", err)
	}
	names := make([]string, len(tables))
	for i, t := range tables {
		names[i] = t.Name
	}
	return names, nil
}

// deleteTables deletes the named inet tables in one transaction.
func (h *Host) deleteTables(names []string) error {
	if len(names) == 0 {
		return nil
	}
	c, err := h.nft()
	if err != nil {
		return err
	}
	for _, n := range names {
		c.DelTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: n})
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("delete %d nftables tables (%s…): %w", len(names), names[0], err)
	}
	return nil
}

// ruleExprs compiles r into nftables expressions, matches in the order
// Rule.String prints them. Every match loads into register 1 and compares.
func ruleExprs(r Rule) []expr.Any {
	var e []expr.Any
	load := func(x expr.Any, op expr.CmpOp, data []byte) {
		e = append(e, x, &expr.Cmp{Op: op, Register: 1, Data: data})
	}
	eq := func(not bool) expr.CmpOp {
		if not {
			return expr.CmpOpNeq
		}
		return expr.CmpOpEq
	}
	if r.IIF != "" {
		load(&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1}, expr.CmpOpEq, ifname(r.IIF))
	}
	if r.OIF != "" {
		load(&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1}, eq(r.NotOIF), ifname(r.OIF))
	}
	if r.Established {
		e = append(e,
			&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
			&expr.Bitwise{
				SourceRegister: 1, DestRegister: 1, Len: 4,
				Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED),
				Xor:  make([]byte, 4),
			},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)})
	}
	if r.IPv6 {
		load(&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1}, expr.CmpOpEq, []byte{unix.NFPROTO_IPV6})
	}
	if r.Saddr.IsValid() || r.Daddr.IsValid() || r.Proto != "" {
		// IPv4 header fields are only read from IPv4 packets.
		load(&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1}, expr.CmpOpEq, []byte{unix.NFPROTO_IPV4})
	}
	for _, m := range []struct {
		offset uint32
		p      prefixMatch
	}{{12, prefixMatch{r.Saddr, r.NotSaddr}}, {16, prefixMatch{r.Daddr, false}}} {
		if !m.p.IsValid() {
			continue
		}
		e = append(e, &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: m.offset, Len: 4})
		if bits := m.p.Bits(); bits < 32 {
			mask := make([]byte, 4)
			for i := range bits {
				mask[i/8] |= 0x80 >> (i % 8)
			}
			e = append(e, &expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: make([]byte, 4)})
		}
		a := m.p.Masked().Addr().As4()
		e = append(e, &expr.Cmp{Op: eq(m.p.not), Register: 1, Data: a[:]})
	}
	if r.Proto != "" {
		proto := byte(unix.IPPROTO_TCP)
		if r.Proto == "udp" {
			proto = unix.IPPROTO_UDP
		}
		load(&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1}, expr.CmpOpEq, []byte{proto})
		load(&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			expr.CmpOpEq, binaryutil.BigEndian.PutUint16(r.Dport))
	}
	switch r.Verdict {
	case Accept:
		e = append(e, &expr.Verdict{Kind: expr.VerdictAccept})
	case Drop:
		e = append(e, &expr.Verdict{Kind: expr.VerdictDrop})
	case Masquerade:
		e = append(e, &expr.Masq{})
	}
	return e
}

type prefixMatch struct {
	netip.Prefix
	not bool
}

// ifname is an interface name as the kernel compares it: NUL-padded to
// IFNAMSIZ.
func ifname(n string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, n)
	return b
}
