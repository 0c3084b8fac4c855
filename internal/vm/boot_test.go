package vm

import "testing"

func TestGuestCmdline(t *testing.T) {
	const ip = "ip=10.0.0.3::10.0.0.1:255.255.255.0:sbox-3:eth0:off:10.0.0.1"
	tests := []struct {
		name, init, extra, network, want string
	}{
		{"hostname only", "", "", "", "slicer.hostname=sbox-3"},
		{"kernel_args trimmed, after the agent's", "", "  console=ttyS1 panic=0 ", "", "slicer.hostname=sbox-3 console=ttyS1 panic=0"},
		{"network", "", "", ip, "slicer.hostname=sbox-3 " + ip},
		{"kernel_args and network", "", "foo=bar", ip, "slicer.hostname=sbox-3 foo=bar " + ip},
		{"init, among the agent's", "systemd", "foo=bar", "", "slicer.hostname=sbox-3 slicer.init=systemd foo=bar"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := GuestCmdline("sbox-3", tt.init, tt.extra, tt.network); got != tt.want {
				t.Errorf("GuestCmdline = %q, want %q", got, tt.want)
			}
		})
	}
}
