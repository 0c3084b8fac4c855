package server

import "testing"

// The /proc parsers are internal/procfile's, tested there.
func TestDefaultRouteDevice(t *testing.T) {
	route := "Iface\tDestination\tGateway\nbr0\t0000A8C0\t00000000\neth0\t00000000\t0101A8C0\n"
	if dev := defaultRouteDevice(route); dev != "eth0" {
		t.Errorf("defaultRouteDevice = %q, want eth0", dev)
	}
}
