package server

import "testing"

func TestHostParsers(t *testing.T) {
	if l, ok := parseLoadavg("0.50 1.25 2.00 1/234 5678\n"); !ok || l != [3]float64{0.5, 1.25, 2} {
		t.Errorf("parseLoadavg = %v %v", l, ok)
	}
	mem := parseMeminfo("MemTotal:       24000 kB\nMemAvailable:    1000 kB\nHugePages_Total:       0\n")
	if mem["MemTotal"] != 24000*1024 || mem["MemAvailable"] != 1000*1024 || mem["HugePages_Total"] != 0 {
		t.Errorf("parseMeminfo = %v", mem)
	}
	route := "Iface\tDestination\tGateway\nbr0\t0000A8C0\t00000000\neth0\t00000000\t0101A8C0\n"
	if dev := defaultRouteDevice(route); dev != "eth0" {
		t.Errorf("defaultRouteDevice = %q, want eth0", dev)
	}
	tcp := "  sl  local_address rem_address   st\n   0: 0100007F:1F90 00000000:0000 0A\n   1: 0100007F:1F90 0100007F:D2F0 01\n   2: 0100007F:D2F0 0100007F:1F90 01\n"
	if n := countEstablished(tcp); n != 2 {
		t.Errorf("countEstablished = %d, want 2", n)
	}
}
