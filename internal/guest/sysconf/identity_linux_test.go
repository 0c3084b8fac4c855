package sysconf

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestBroadcast(t *testing.T) {
	for in, want := range map[string]string{
		"192.168.137.2/24": "192.168.137.255",
		"169.254.8.2/30":   "169.254.8.3",
		"10.1.2.3/8":       "10.255.255.255",
	} {
		if got := broadcast(netip.MustParsePrefix(in)).String(); got != want {
			t.Errorf("broadcast(%s) = %s, want %s", in, got, want)
		}
	}
}

// TestRandPoolInfo checks the layout of struct rand_pool_info: entropy in
// bits, size in bytes, then the bytes.
func TestRandPoolInfo(t *testing.T) {
	data := []byte{1, 2, 3, 4, 5}
	got := randPoolInfo(data)
	if n := binary.NativeEndian.Uint32(got[0:4]); n != 40 {
		t.Errorf("entropy_count = %d, want 40 bits", n)
	}
	if n := binary.NativeEndian.Uint32(got[4:8]); n != 5 {
		t.Errorf("buf_size = %d, want 5", n)
	}
	if !bytes.Equal(got[8:], data) {
		t.Errorf("buf = %v, want %v", got[8:], data)
	}
}

// TestAddEntropy credits 32 random bytes to this machine's pool and has it
// reseed: harmless, and it proves both ioctls are accepted as written.
func TestAddEntropy(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("RNDADDENTROPY and RNDRESEEDCRNG need CAP_SYS_ADMIN: run as root")
	}
	data := make([]byte, 32)
	if f, err := os.Open("/dev/urandom"); err == nil {
		f.Read(data)
		f.Close()
	}
	if err := AddEntropy(data); err != nil {
		t.Fatalf("AddEntropy: %v", err)
	}
}

// sandboxEnv marks the child process TestApplyIdentity runs itself as, in
// namespaces of its own.
const sandboxEnv = "SYSCONF_TEST_SANDBOX"

// TestApplyIdentity applies two identities in turn, in a network and UTS
// namespace of its own (a user namespace too when not root), to a veth
// that starts with other addresses: each time the device holds the new
// address alone, with the new default route, the hostname is the new one
// and the files under a temporary root say so.
func TestApplyIdentity(t *testing.T) {
	if os.Getenv(sandboxEnv) != "" {
		applyIdentityInSandbox(t, os.Getenv(sandboxEnv))
		return
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs ip(8) to make the test's veth")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestApplyIdentity$", "-test.v")
	cmd.Env = append(os.Environ(), sandboxEnv+"="+t.TempDir())
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET | syscall.CLONE_NEWUTS}
	if os.Geteuid() != 0 {
		cmd.SysProcAttr.Cloneflags |= syscall.CLONE_NEWUSER
		cmd.SysProcAttr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Geteuid(), Size: 1}}
		cmd.SysProcAttr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getegid(), Size: 1}}
	}
	out, err := cmd.CombinedOutput()
	if err != nil && bytes.Contains(out, []byte("operation not permitted")) && os.Geteuid() != 0 {
		t.Skipf("no user namespaces here: %s", out)
	}
	if err != nil || !bytes.Contains(out, []byte("--- PASS: TestApplyIdentity")) {
		t.Fatalf("sandbox: %v\n%s", err, out)
	}
}

func applyIdentityInSandbox(t *testing.T, root string) {
	for _, args := range [][]string{
		{"link", "add", "eth9", "type", "veth", "peer", "name", "eth9p"},
		{"link", "set", "eth9p", "up"},
		{"addr", "add", "10.1.0.9/16", "dev", "eth9"},
		{"addr", "add", "10.1.0.10/16", "dev", "eth9"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	const id1, id2 = "11111111111111111111111111111111", "22222222222222222222222222222222"
	for _, tc := range []struct {
		host, addr, gw, dns, mid, mac string
	}{
		{"sandbox-1", "10.2.3.4/24", "10.2.3.1", "10.2.3.53", id1, ""},
		// The same subnet: the old address is the primary one, whose
		// removal would take a secondary of its subnet with it. The
		// device, up by now, is given a new MAC.
		{"sandbox-2", "10.2.3.5/24", "10.2.3.254", "10.2.3.54", id2, "02:00:5e:aa:bb:09"},
	} {
		n := &Network{Device: "eth9", Address: netip.MustParsePrefix(tc.addr), Gateway: netip.MustParseAddr(tc.gw),
			DNS: []netip.Addr{netip.MustParseAddr(tc.dns)}}
		var oldMAC net.HardwareAddr
		if ifc, err := net.InterfaceByName("eth9"); err == nil {
			oldMAC = ifc.HardwareAddr
		}
		if tc.mac != "" {
			n.MAC, _ = net.ParseMAC(tc.mac)
		}
		if err := ApplyIdentity(Identity{Hostname: tc.host, Network: n, MachineID: tc.mid}, root); err != nil {
			t.Fatalf("ApplyIdentity %s: %v", tc.host, err)
		}
		if h, _ := os.Hostname(); h != tc.host {
			t.Errorf("hostname = %q, want %q", h, tc.host)
		}
		ifc, err := net.InterfaceByName("eth9")
		if err != nil {
			t.Fatal(err)
		}
		addrs, err := ipv4Addresses(ifc.Index)
		if err != nil || len(addrs) != 1 || addrs[0] != n.Address {
			t.Errorf("eth9 addresses = %v, %v; want %s alone", addrs, err, n.Address)
		}
		if ifc.Flags&net.FlagUp == 0 {
			t.Errorf("eth9 is not up")
		}
		if want := firstMAC(n.MAC, oldMAC); ifc.HardwareAddr.String() != want.String() {
			t.Errorf("eth9 mac = %s, want %s", ifc.HardwareAddr, want)
		}
		if gw := defaultGateway(t, "eth9"); gw != tc.gw {
			t.Errorf("default route via %q, want %s", gw, tc.gw)
		}
		for file, want := range map[string]string{
			"etc/hostname": tc.host + "\n", "etc/machine-id": tc.mid + "\n", "etc/resolv.conf": resolvConf(n.DNS),
			// made by the first, renamed by the second
			"etc/hosts": "127.0.1.1\t" + tc.host + "\n",
		} {
			if got, err := os.ReadFile(filepath.Join(root, file)); err != nil || string(got) != want {
				t.Errorf("%s = %q, %v; want %q", file, got, err, want)
			}
		}
	}
	if err := ApplyIdentity(Identity{Hostname: "bad_name"}, root); err == nil {
		t.Errorf("ApplyIdentity of a bad hostname succeeded")
	}
	if h, _ := os.Hostname(); h != "sandbox-2" {
		t.Errorf("a refused identity changed the hostname to %q", h)
	}
}

// defaultGateway reads the gateway of dev's default route from
// /proc/net/route ("" when there is none).
func defaultGateway(t *testing.T, dev string) string {
	data, err := os.ReadFile("/proc/net/route")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 3 || f[0] != dev || f[1] != "00000000" {
			continue
		}
		var gw uint32
		fmt.Sscanf(f[2], "%X", &gw)
		var b [4]byte
		binary.NativeEndian.PutUint32(b[:], gw)
		return netip.AddrFrom4(b).String()
	}
	return ""
}

// firstMAC is a, or b when a is nil.
func firstMAC(a, b net.HardwareAddr) net.HardwareAddr {
	if a != nil {
		return a
	}
	return b
}
