package guest

import (
	"context"
	"net"
	"net/netip"
	"testing"
)

// TestListIPv4 reads this machine's addresses through netlink: the
// loopback address is there, on a loopback interface and not of global
// scope, and every address is one the standard library sees too.
func TestListIPv4(t *testing.T) {
	addrs, err := listIPv4()
	if err != nil {
		t.Fatalf("listIPv4: %v", err)
	}
	known := map[netip.Addr]bool{}
	sys, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range sys {
		if n, ok := a.(*net.IPNet); ok {
			ip, _ := netip.AddrFromSlice(n.IP)
			known[ip.Unmap()] = true
		}
	}
	foundLo := false
	for _, a := range addrs {
		if !known[a.Addr] {
			t.Errorf("listIPv4 gave %v, which net.InterfaceAddrs does not list", a.Addr)
		}
		if a.Addr == netip.MustParseAddr("127.0.0.1") {
			foundLo = true
			if !a.Loopback || a.Global {
				t.Errorf("127.0.0.1: %+v, want a loopback interface and host scope", a)
			}
		}
	}
	if !foundLo {
		t.Errorf("listIPv4 = %+v, want 127.0.0.1 among them", addrs)
	}
}

func TestHealthIP(t *testing.T) {
	h := newHarness(t)
	got, err := h.client.Health(context.Background())
	if err != nil {
		t.Fatalf("Health: %v", err)
	}
	addrs, err := listIPv4()
	if err != nil {
		t.Fatal(err)
	}
	if want := primaryIPv4(addrs); got.IP != want {
		t.Errorf("health ip = %q, want %q", got.IP, want)
	}
}
