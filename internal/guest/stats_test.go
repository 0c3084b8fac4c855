package guest

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// Samples of the /proc files stats reads, as a guest with one virtio disk
// and one network interface shows them.
const (
	sampleMeminfo = `MemTotal:         233148 kB
MemFree:          180112 kB
MemAvailable:     190340 kB
Buffers:            1024 kB
Cached:            12000 kB
SwapCached:            0 kB
HugePages_Total:       0
`
	sampleLoadavg  = "0.52 0.18 0.06 2/71 245\n"
	sampleUptime   = "413.27 390.11\n"
	sampleProcStat = `cpu  1203 0 2301 38811 12 0 40 0 0 0
cpu0 600 0 1100 19400 6 0 20 0 0 0
cpu1 603 0 1201 19411 6 0 20 0 0 0
intr 123456 0 9 0
ctxt 98765
btime 1732350000
processes 250
procs_running 1
`
	sampleDiskstats = ` 254       0 vda 1520 301 98712 1203 220 130 4096 880 2 1520 2083 0 0 0 0 0 0
 254       1 vda1 1400 301 96000 1100 200 130 4000 800 0 1400 1900 0 0 0 0 0 0
 254      16 vdb 10 0 80 3 1 0 8 1 1 4 4 0 0 0 0 0 0
   7       0 loop0 5 0 10 0 0 0 0 0 0 0 0 0 0 0 0 0 0
`
	sampleNetDev = `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:  751296    7845    0    0    0     0          0         0   751296    7845    0    0    0     0       0          0
  eth0:  120000     900    0    0    0     0          0         0    34000     300    0    0    0     0       0          0
  eth1:    1000      10    0    0    0     0          0         0      500       5    0    0    0     0       0          0
`
	sampleTCP = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1234 1 0000000000000000 100 0 0 10 0
   1: 0200000A:0016 0100000A:C350 01 00000000:00000000 02:0000A3C1 00000000     0        0 1240 2 0000000000000000 20 4 29 10 -1
   2: 0200000A:0016 0100000A:C352 01 00000000:00000000 02:0000A3C1 00000000     0        0 1241 2 0000000000000000 20 4 29 10 -1
   3: 0200000A:C278 507100CB:0050 06 00000000:00000000 03:000013AA 00000000     0        0 0 3 0000000000000000
`
	sampleFileNr  = "1184\t0\t9223372036854775807\n"
	sampleEntropy = "256\n"
)

func TestUptime(t *testing.T) {
	tests := []struct {
		data string
		want string
	}{
		{sampleUptime, "6m53s"},
		{"0.49 0.1\n", "0s"},
		{"59.5 1\n", "1m0s"},
		{"90061.2 5\n", "25h1m1s"},
	}
	for _, tt := range tests {
		d, err := parseUptime([]byte(tt.data))
		if err != nil {
			t.Fatalf("parseUptime(%q): %v", tt.data, err)
		}
		if got := formatUptime(d); got != tt.want {
			t.Errorf("formatUptime(parseUptime(%q)) = %q, want %q", tt.data, got, tt.want)
		}
	}
	if _, err := parseUptime(nil); err == nil {
		t.Error("parseUptime(empty) succeeded, want an error")
	}
}

func TestCountCPUs(t *testing.T) {
	tests := []struct {
		data string
		want int
	}{
		{sampleProcStat, 2},
		{"cpu  1 2 3\ncpu0 1 2 3\n", 1},
		{"cpu  1 2 3\n", 0},
		{"", 0},
	}
	for _, tt := range tests {
		if got := countCPUs([]byte(tt.data)); got != tt.want {
			t.Errorf("countCPUs(%q) = %d, want %d", tt.data, got, tt.want)
		}
	}
}

func TestParseDiskstats(t *testing.T) {
	want := diskTotals{
		ReadBytes:  (98712 + 80) * 512, // vda and vdb, not vda1 nor loop0
		WriteBytes: (4096 + 8) * 512,
		Inflight:   2 + 1,
	}
	if diff := cmp.Diff(want, parseDiskstats([]byte(sampleDiskstats))); diff != "" {
		t.Errorf("parseDiskstats (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(diskTotals{}, parseDiskstats([]byte("254 0 vda 1 2\n"))); diff != "" {
		t.Errorf("parseDiskstats(short line) (-want +got):\n%s", diff)
	}
}

func TestIsVirtioDisk(t *testing.T) {
	for name, want := range map[string]bool{
		"vda": true, "vdb": true, "vdaa": true,
		"vda1": false, "vd": false, "sda": false, "nvme0n1": false, "loop0": false, "vdA": false,
	} {
		if got := isVirtioDisk(name); got != want {
			t.Errorf("isVirtioDisk(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestParseNetDev(t *testing.T) {
	rx, tx := parseNetDev([]byte(sampleNetDev))
	if rx != 120000+1000 || tx != 34000+500 {
		t.Errorf("parseNetDev(sample) = %d, %d; want %d, %d (lo excluded)", rx, tx, 121000, 34500)
	}
	if rx, tx := parseNetDev(nil); rx != 0 || tx != 0 {
		t.Errorf("parseNetDev(empty) = %d, %d; want 0, 0", rx, tx)
	}
}

func TestArchName(t *testing.T) {
	for goarch, want := range map[string]string{"amd64": "x86_64", "arm64": "aarch64", "386": "i686", "riscv64": "riscv64"} {
		if got := archName(goarch); got != want {
			t.Errorf("archName(%q) = %q, want %q", goarch, got, want)
		}
	}
}

func TestDiskSpaceOf(t *testing.T) {
	tests := []struct {
		name                         string
		blocks, bfree, bavail, bsize uint64
		want                         diskSpace
	}{
		// 1000 blocks, 400 free of which 300 for users: used 600, df's
		// percentage is 600/(600+300).
		{"reserved blocks", 1000, 400, 300, 4096, diskSpace{Total: 1000 * 4096, Used: 600 * 4096, Free: 300 * 4096, UsedPercent: 600.0 / 900 * 100}},
		{"empty fs", 100, 100, 100, 1024, diskSpace{Total: 100 * 1024, Free: 100 * 1024}},
		{"nothing", 0, 0, 0, 4096, diskSpace{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := diskSpaceOf(tt.blocks, tt.bfree, tt.bavail, tt.bsize)
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateApprox(0, 1e-9)); diff != "" {
				t.Errorf("diskSpaceOf (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPrimaryIPv4(t *testing.T) {
	ip := netip.MustParseAddr
	lo := ifAddr{Index: 1, Loopback: true, Addr: ip("127.0.0.1")}
	tests := []struct {
		name  string
		addrs []ifAddr
		want  string
	}{
		{"none", nil, ""},
		{"loopback only", []ifAddr{lo}, ""},
		{"eth0", []ifAddr{lo, {Index: 2, Global: true, Addr: ip("192.168.137.2")}}, "192.168.137.2"},
		{"global address on lo skipped", []ifAddr{{Index: 1, Loopback: true, Global: true, Addr: ip("10.9.9.9")}, {Index: 2, Global: true, Addr: ip("10.0.0.2")}}, "10.0.0.2"},
		{"lowest index first", []ifAddr{{Index: 3, Global: true, Addr: ip("10.0.1.2")}, {Index: 2, Global: true, Addr: ip("10.0.0.2")}}, "10.0.0.2"},
		{"primary before secondary", []ifAddr{{Index: 2, Global: true, Addr: ip("10.0.0.2")}, {Index: 2, Global: true, Addr: ip("10.0.0.3")}}, "10.0.0.2"},
		{"link scope skipped", []ifAddr{{Index: 2, Addr: ip("169.254.3.4")}, {Index: 3, Global: true, Addr: ip("10.0.0.2")}}, "10.0.0.2"},
		{"isolated range with global scope", []ifAddr{{Index: 2, Global: true, Addr: ip("169.254.100.2")}}, "169.254.100.2"},
		{"IPv6 skipped", []ifAddr{{Index: 2, Global: true, Addr: ip("fd00::2")}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := primaryIPv4(tt.addrs); got != tt.want {
				t.Errorf("primaryIPv4 = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestPercent(t *testing.T) {
	if got := percent(1, 4); got != 25 {
		t.Errorf("percent(1, 4) = %v, want 25", got)
	}
	if got := percent(1, 0); got != 0 {
		t.Errorf("percent(1, 0) = %v, want 0", got)
	}
}
