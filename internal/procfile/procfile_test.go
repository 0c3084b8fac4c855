package procfile

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Samples of the files, as a guest shows them (the guest's stats tests
// read the same in a made-up /proc) and as the host does.
const (
	sampleMeminfo = `MemTotal:         233148 kB
MemFree:          180112 kB
MemAvailable:     190340 kB
Buffers:            1024 kB
Cached:            12000 kB
SwapCached:            0 kB
HugePages_Total:       0
`
	sampleLoadavg = "0.52 0.18 0.06 2/71 245\n"
	sampleTCP     = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1234 1 0000000000000000 100 0 0 10 0
   1: 0200000A:0016 0100000A:C350 01 00000000:00000000 02:0000A3C1 00000000     0        0 1240 2 0000000000000000 20 4 29 10 -1
   2: 0200000A:0016 0100000A:C352 01 00000000:00000000 02:0000A3C1 00000000     0        0 1241 2 0000000000000000 20 4 29 10 -1
   3: 0200000A:C278 507100CB:0050 06 00000000:00000000 03:000013AA 00000000     0        0 0 3 0000000000000000
`
	sampleFileNr  = "1184\t0\t9223372036854775807\n"
	sampleEntropy = "256\n"
)

// TestHostSamples parses what the daemon's host metrics read, in the
// shapes the host shows: meminfo values with and without a unit, a tcp
// listing with a listener.
func TestHostSamples(t *testing.T) {
	if l, err := Loadavg([]byte("0.50 1.25 2.00 1/234 5678\n")); err != nil || l != [3]float64{0.5, 1.25, 2} {
		t.Errorf("Loadavg = %v, %v", l, err)
	}
	mem, err := Meminfo([]byte("MemTotal:       24000 kB\nMemAvailable:    1000 kB\nHugePages_Total:       0\n"))
	if err != nil || mem != (Mem{Total: 24000 * 1024, Available: 1000 * 1024}) {
		t.Errorf("Meminfo = %+v, %v", mem, err)
	}
	tcp := "  sl  local_address rem_address   st\n   0: 0100007F:1F90 00000000:0000 0A\n   1: 0100007F:1F90 0100007F:D2F0 01\n   2: 0100007F:D2F0 0100007F:1F90 01\n"
	if n := EstablishedTCP([]byte(tcp)); n != 2 {
		t.Errorf("EstablishedTCP = %d, want 2", n)
	}
}

func TestMeminfo(t *testing.T) {
	tests := []struct {
		name    string
		data    string
		want    Mem
		wantErr bool
	}{
		{"sample", sampleMeminfo, Mem{Total: 233148 * 1024, Available: 190340 * 1024}, false},
		{"no MemAvailable", "MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 20 kB\nCached: 30 kB\n", Mem{Total: 1000 * 1024, Available: 150 * 1024}, false},
		{"available capped at total", "MemTotal: 100 kB\nMemAvailable: 200 kB\n", Mem{Total: 100 * 1024, Available: 100 * 1024}, false},
		{"no MemTotal", "MemFree: 100 kB\n", Mem{}, true},
		{"empty", "", Mem{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Meminfo([]byte(tt.data))
			if (err != nil) != tt.wantErr {
				t.Fatalf("Meminfo error = %v, want error %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Meminfo (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLoadavg(t *testing.T) {
	got, err := Loadavg([]byte(sampleLoadavg))
	if err != nil || got != [3]float64{0.52, 0.18, 0.06} {
		t.Errorf("Loadavg(sample) = %v, %v; want [0.52 0.18 0.06]", got, err)
	}
	for _, bad := range []string{"", "0.1 0.2", "x 0.2 0.3 1/2 3"} {
		if _, err := Loadavg([]byte(bad)); err == nil {
			t.Errorf("Loadavg(%q) succeeded, want an error", bad)
		}
	}
}

func TestEstablishedTCP(t *testing.T) {
	if got := EstablishedTCP([]byte(sampleTCP)); got != 2 {
		t.Errorf("EstablishedTCP(sample) = %d, want 2 (one listener, one TIME_WAIT)", got)
	}
	if got := EstablishedTCP(nil); got != 0 {
		t.Errorf("EstablishedTCP(empty) = %d, want 0", got)
	}
}

func TestFirstInt(t *testing.T) {
	tests := []struct {
		data    string
		want    int64
		wantErr bool
	}{
		{sampleFileNr, 1184, false},
		{sampleEntropy, 256, false},
		{"", 0, true},
		{"x 1", 0, true},
	}
	for _, tt := range tests {
		got, err := FirstInt([]byte(tt.data))
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("FirstInt(%q) = %d, %v; want %d, error %v", tt.data, got, err, tt.want, tt.wantErr)
		}
	}
}
