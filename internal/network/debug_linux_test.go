package network

import (
	"os/exec"
	"testing"
)

func TestDebugLab(t *testing.T) {
	l := newLab(t)
	for _, ns := range []string{l.host, l.inet} {
		out, _ := exec.Command("nsenter", "--net="+ns, "sh", "-c", "ip addr; ip route; sysctl net.ipv4.conf.all.rp_filter net.ipv4.conf.eth0.rp_filter 2>&1").CombinedOutput()
		t.Logf("%s:\n%s", ns, out)
	}
	l.check(probe{name: "host to dropped", from: l.host, to: droppedAddr + ":8080", reach: true})
}
