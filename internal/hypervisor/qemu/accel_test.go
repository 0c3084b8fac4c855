package qemu

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/openslicer/openslicer/api"
)

// fakeProbes answers the decision's questions from fields, and counts
// the boot probes it is asked to run.
type fakeProbes struct {
	host   KVMHost
	key    accelCacheKey
	keyErr error
	cache  accelCache
	// saved is the last cache SaveCache was given, nil if never.
	saved   *accelCache
	saveErr error
	probe   BootProbe
	probes  int
	// onProbe runs during the probe (to cancel a context).
	onProbe func()
}

func (f *fakeProbes) KVM() KVMHost  { return f.host }
func (f *fakeProbes) TSCkHz() int64 { return 2_100_000 }
func (f *fakeProbes) CacheKey(kernel string) (accelCacheKey, error) {
	return f.key, f.keyErr
}
func (f *fakeProbes) LoadCache() (accelCache, error) { return f.cache, nil }
func (f *fakeProbes) SaveCache(c accelCache) error {
	if f.saveErr != nil {
		return f.saveErr
	}
	f.saved = &c
	f.cache = c
	return nil
}
func (f *fakeProbes) BootProbe(ctx context.Context, kernel string) BootProbe {
	f.probes++
	if f.onProbe != nil {
		f.onProbe()
	}
	return f.probe
}

var (
	// hardwareKVM passes every cheap check.
	hardwareKVM = KVMHost{APIVersion: 12, Modules: []string{"kvm_intel"}}
	// pvmKVM opens and makes VMs, but is served by kvm_pvm only.
	pvmKVM = KVMHost{APIVersion: 12, Modules: []string{"kvm_pvm"}}
	// noKVM has no /dev/kvm at all.
	noKVM = KVMHost{OpenErr: &fs.PathError{Op: "open", Path: "/dev/kvm", Err: syscall.ENOENT}}
	// unopenableKVM is a /dev/kvm that cannot be opened read-write (here
	// a socket bind-mounted over it, which gives ENXIO).
	unopenableKVM = KVMHost{OpenErr: &fs.PathError{Op: "open", Path: "/dev/kvm", Err: syscall.ENXIO}, Modules: []string{"kvm_intel"}}

	testKey    = accelCacheKey{KernelSHA256: "k1", BootID: "boot-1", QEMUVersion: "QEMU emulator version 7.2.22"}
	probeOK    = BootProbe{OK: true, Took: 180 * time.Millisecond, Line: "[    0.000000] Linux version 6.1.0"}
	probeSilnt = BootProbe{Took: 5 * time.Second, Why: "no kernel line within 5s", Output: "Probing EDD (edd=off to disable)... ok"}
)

// TestDecideAccel is the decision table: each host, mode and cache gives
// one accelerator for one reason, running the boot probe only when needed.
func TestDecideAccel(t *testing.T) {
	tests := []struct {
		name       string
		mode       string
		probes     fakeProbes
		wantKVM    bool
		wantReason string // a substring of the reason
		wantProbes int
		wantHit    bool
		wantSaved  bool
		wantChecks []string // names of the checks that ran, failed ones with a "!"
	}{
		{
			name: "hardware KVM, probe prints", mode: AccelAuto,
			probes:  fakeProbes{host: hardwareKVM, key: testKey, probe: probeOK},
			wantKVM: true, wantReason: "printed its first line under kvm after 180ms", wantProbes: 1, wantSaved: true,
			wantChecks: []string{CheckDevKVM, CheckAPIVersion, CheckCreateVM, CheckHWModule, CheckBootProbe},
		},
		{
			name: "PVM only: no probe", mode: AccelAuto,
			probes:     fakeProbes{host: pvmKVM, key: testKey, probe: probeOK},
			wantReason: "/dev/kvm is served by kvm_pvm only",
			wantChecks: []string{CheckDevKVM, CheckAPIVersion, CheckCreateVM, "!" + CheckHWModule},
		},
		{
			name: "no /dev/kvm", mode: AccelAuto,
			probes:     fakeProbes{host: noKVM, key: testKey, probe: probeOK},
			wantReason: "this host has no /dev/kvm",
			wantChecks: []string{"!" + CheckDevKVM, "!" + CheckHWModule},
		},
		{
			name: "/dev/kvm does not open", mode: AccelAuto,
			probes:     fakeProbes{host: unopenableKVM, key: testKey, probe: probeOK},
			wantReason: "/dev/kvm does not open read-write (open /dev/kvm: no such device or address)",
			wantChecks: []string{"!" + CheckDevKVM, CheckHWModule},
		},
		{
			name: "wrong API version", mode: AccelAuto,
			probes:     fakeProbes{host: KVMHost{APIVersion: 11, Modules: []string{"kvm_amd"}}, key: testKey},
			wantReason: "KVM API version 11, not 12",
			wantChecks: []string{CheckDevKVM, "!" + CheckAPIVersion, CheckHWModule},
		},
		{
			name: "KVM_CREATE_VM fails", mode: AccelAuto,
			probes:     fakeProbes{host: KVMHost{APIVersion: 12, CreateVMErr: syscall.EBUSY, Modules: []string{"kvm_intel"}}, key: testKey},
			wantReason: "KVM_CREATE_VM on /dev/kvm fails (device or resource busy)",
			wantChecks: []string{CheckDevKVM, CheckAPIVersion, "!" + CheckCreateVM, CheckHWModule},
		},
		{
			name: "boot probe times out", mode: AccelAuto,
			probes:     fakeProbes{host: hardwareKVM, key: testKey, probe: probeSilnt},
			wantReason: `does not boot under kvm on this host (boot probe: no kernel line within 5s); last output "Probing EDD (edd=off to disable)... ok"`,
			wantProbes: 1, wantSaved: true,
			wantChecks: []string{CheckDevKVM, CheckAPIVersion, CheckCreateVM, CheckHWModule, "!" + CheckBootProbe},
		},
		{
			name: "valid cache hit: no probe", mode: AccelAuto,
			probes: fakeProbes{host: hardwareKVM, key: testKey, probe: probeSilnt,
				cache: accelCache{Entries: []accelCacheEntry{{testKey, probeVerdict{KVM: true, Reason: "earlier probe said yes"}}}}},
			wantKVM: true, wantReason: "earlier probe said yes (cached)", wantHit: true,
			wantChecks: []string{CheckDevKVM, CheckAPIVersion, CheckCreateVM, CheckHWModule, CheckBootProbe},
		},
		{
			name: "stale cache after a QEMU upgrade: probe again", mode: AccelAuto,
			probes: fakeProbes{host: hardwareKVM, key: testKey, probe: probeSilnt,
				cache: accelCache{Entries: []accelCacheEntry{{
					accelCacheKey{KernelSHA256: "k1", BootID: "boot-1", QEMUVersion: "QEMU emulator version 7.2.0"},
					probeVerdict{KVM: true, Reason: "earlier probe said yes"},
				}}}},
			wantReason: "does not boot under kvm", wantProbes: 1, wantSaved: true,
			wantChecks: []string{CheckDevKVM, CheckAPIVersion, CheckCreateVM, CheckHWModule, "!" + CheckBootProbe},
		},
		{
			name: "stale cache after a host reboot: probe again", mode: AccelAuto,
			probes: fakeProbes{host: hardwareKVM, key: testKey, probe: probeOK,
				cache: accelCache{Entries: []accelCacheEntry{{
					accelCacheKey{KernelSHA256: "k1", BootID: "boot-0", QEMUVersion: testKey.QEMUVersion},
					probeVerdict{KVM: false, Reason: "earlier probe said no"},
				}}}},
			wantKVM: true, wantReason: "boot probe", wantProbes: 1, wantSaved: true,
			wantChecks: []string{CheckDevKVM, CheckAPIVersion, CheckCreateVM, CheckHWModule, CheckBootProbe},
		},
		{
			name: "no cache key: probe, not cached", mode: AccelAuto,
			probes:  fakeProbes{host: hardwareKVM, keyErr: errors.New("no cache directory"), probe: probeOK},
			wantKVM: true, wantReason: "boot probe", wantProbes: 1,
			wantChecks: []string{CheckDevKVM, CheckAPIVersion, CheckCreateVM, CheckHWModule, CheckBootProbe},
		},
		{
			name: "forced kvm on hardware KVM: no probe", mode: AccelKVM,
			probes:  fakeProbes{host: hardwareKVM, key: testKey, probe: probeSilnt},
			wantKVM: true, wantReason: "kvm was asked for",
			wantChecks: []string{CheckDevKVM, CheckAPIVersion, CheckCreateVM, CheckHWModule},
		},
		{
			name: "forced tcg on hardware KVM: nothing checked", mode: AccelTCG,
			probes:     fakeProbes{host: hardwareKVM, key: testKey, probe: probeOK},
			wantReason: "tcg was asked for",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.probes
			d, err := decideAccel(context.Background(), tt.mode, "/k/vmlinuz", &p)
			if err != nil {
				t.Fatalf("decideAccel: %v", err)
			}
			if d.Accel.KVM != tt.wantKVM {
				t.Errorf("KVM = %v, want %v (reason %q)", d.Accel.KVM, tt.wantKVM, d.Reason)
			}
			if want := map[bool]string{true: "kvm", false: "tcg"}[tt.wantKVM]; d.Accelerator != want {
				t.Errorf("Accelerator = %q, want %q", d.Accelerator, want)
			}
			if !d.Accel.KVM && d.Accel.TSCkHz != 2_100_000 {
				t.Errorf("TCG decision without the TSC rate: %+v", d.Accel)
			}
			if !strings.Contains(d.Reason, tt.wantReason) {
				t.Errorf("Reason = %q, want it to contain %q", d.Reason, tt.wantReason)
			}
			if p.probes != tt.wantProbes {
				t.Errorf("boot probes run = %d, want %d", p.probes, tt.wantProbes)
			}
			if (d.Probe != nil) != (tt.wantProbes > 0) {
				t.Errorf("Probe = %+v with %d probes run", d.Probe, p.probes)
			}
			if d.CacheHit != tt.wantHit {
				t.Errorf("CacheHit = %v, want %v", d.CacheHit, tt.wantHit)
			}
			if (p.saved != nil) != tt.wantSaved {
				t.Errorf("cache saved = %v, want %v", p.saved != nil, tt.wantSaved)
			}
			if tt.wantSaved {
				if v, ok := p.saved.lookup(tt.probes.key); !ok || v.KVM != d.Accel.KVM {
					t.Errorf("saved cache %+v has no verdict %v for %+v", p.saved, d.Accel.KVM, tt.probes.key)
				}
			}
			var checks []string
			for _, c := range d.Checks {
				name := c.Name
				if !c.OK {
					name = "!" + name
				}
				checks = append(checks, name)
			}
			if diff := cmp.Diff(tt.wantChecks, checks); diff != "" {
				t.Errorf("checks mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// Forcing kvm on a host that fails the cheap checks is an error naming the
// reason and the way out.
func TestDecideAccelForcedKVMFails(t *testing.T) {
	for _, tt := range []struct {
		host KVMHost
		want string
	}{
		{pvmKVM, "accel kvm: /dev/kvm is served by kvm_pvm only, which cannot boot this kernel (PVM runs only kernels built as PVM guests): use --accel auto or tcg"},
		{noKVM, "accel kvm: this host has no /dev/kvm: use --accel auto or tcg"},
		{unopenableKVM, "accel kvm: /dev/kvm does not open read-write (open /dev/kvm: no such device or address): use --accel auto or tcg"},
	} {
		p := &fakeProbes{host: tt.host, probe: probeOK}
		_, err := decideAccel(context.Background(), AccelKVM, "/k/vmlinuz", p)
		if err == nil || err.Error() != tt.want {
			t.Errorf("decideAccel(kvm) on %+v error = %v, want %q", tt.host, err, tt.want)
		}
		if p.probes != 0 {
			t.Errorf("forced kvm ran %d boot probes", p.probes)
		}
	}
}

// A probe cut short by the caller's context is an error and not cached:
// the next start probes again.
func TestDecideAccelCancelledProbe(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	p := &fakeProbes{host: hardwareKVM, key: testKey, probe: probeSilnt, onProbe: cancel}
	_, err := decideAccel(ctx, AccelAuto, "/k/vmlinuz", p)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("decideAccel with a cancelled probe error = %v, want context.Canceled", err)
	}
	if p.saved != nil {
		t.Errorf("a cancelled probe was cached: %+v", p.saved)
	}
}

// A cache that cannot be written still gives a decision, with a note.
func TestDecideAccelCacheWriteFails(t *testing.T) {
	p := &fakeProbes{host: hardwareKVM, key: testKey, probe: probeOK, saveErr: errors.New("read-only file system")}
	d, err := decideAccel(context.Background(), AccelAuto, "/k/vmlinuz", p)
	if err != nil || !d.Accel.KVM {
		t.Fatalf("decideAccel = %+v, %v; want kvm", d, err)
	}
	if !strings.Contains(d.CacheNote, "read-only file system") {
		t.Errorf("CacheNote = %q, want the write error", d.CacheNote)
	}
}

func TestDecideAccelBadInput(t *testing.T) {
	if _, err := decideAccel(context.Background(), "xen", "/k", &fakeProbes{}); !errors.Is(err, api.ErrInvalid) {
		t.Errorf("mode xen: error = %v, want api.ErrInvalid", err)
	}
	if _, err := decideAccel(context.Background(), AccelAuto, "", &fakeProbes{host: hardwareKVM}); !errors.Is(err, api.ErrInvalid) {
		t.Errorf("auto without a kernel: error = %v, want api.ErrInvalid", err)
	}
}

func TestAccelModeFrom(t *testing.T) {
	for _, tt := range []struct {
		flag, env, want, wantErr string
	}{
		{"", "", AccelAuto, ""},
		{"", "tcg", AccelTCG, ""},
		{"kvm", "tcg", AccelKVM, ""}, // the flag wins
		{"auto", "kvm", AccelAuto, ""},
		{"KVM", "", "", `--accel: invalid argument: accelerator "KVM": want one of auto, kvm, tcg`},
		{"", "hvf", "", `SLICER_ACCEL: invalid argument: accelerator "hvf": want one of auto, kvm, tcg`},
	} {
		got, err := AccelModeFrom(tt.flag, tt.env)
		if tt.wantErr != "" {
			if err == nil || err.Error() != tt.wantErr || !errors.Is(err, api.ErrInvalid) {
				t.Errorf("AccelModeFrom(%q, %q) error = %v, want %q", tt.flag, tt.env, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("AccelModeFrom(%q, %q) = %q, %v; want %q", tt.flag, tt.env, got, err, tt.want)
		}
	}
}

// The cache keeps one verdict per kernel, and drops verdicts from an
// earlier host boot, which can never match again.
func TestAccelCachePut(t *testing.T) {
	old := accelCacheKey{"k1", "boot-0", "v1"}
	other := accelCacheKey{"k2", "boot-1", "v1"}
	c := accelCache{Entries: []accelCacheEntry{{old, probeVerdict{Reason: "old"}}, {other, probeVerdict{Reason: "other"}}}}
	c = c.put(accelCacheKey{"k1", "boot-1", "v2"}, probeVerdict{KVM: true, Reason: "new"})
	c = c.put(accelCacheKey{"k1", "boot-1", "v3"}, probeVerdict{KVM: true, Reason: "newer"})
	var got []string
	for _, e := range c.Entries {
		got = append(got, fmt.Sprintf("%s/%s/%s=%s", e.KernelSHA256, e.BootID, e.QEMUVersion, e.Reason))
	}
	want := []string{"k2/boot-1/v1=other", "k1/boot-1/v3=newer"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("cache entries mismatch (-want +got):\n%s", diff)
	}
}

// The cache file round-trips, is replaced whole, and a missing one is an
// empty cache.
func TestAccelCacheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), AccelCacheFile)
	c, err := readAccelCache(path)
	if err != nil || len(c.Entries) != 0 {
		t.Fatalf("missing cache = %+v, %v; want empty", c, err)
	}
	want := accelCache{}.put(testKey, probeVerdict{KVM: true, Reason: "r", ProbeMS: 180, ProbedAt: time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)})
	if err := writeAccelCache(path, want); err != nil {
		t.Fatal(err)
	}
	got, err := readAccelCache(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(want, got) {
		t.Errorf("cache round trip = %+v, want %+v", got, want)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("cache dir holds %v, want only the cache file", entries)
	}
	if err := os.WriteFile(path, []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := readAccelCache(path); err == nil {
		t.Error("a corrupt cache read without error")
	}
}

func TestKVMModules(t *testing.T) {
	dir := t.TempDir()
	for _, m := range []string{"kvm", "kvm_pvm", "kvm_intel"} {
		if err := os.Mkdir(filepath.Join(dir, m), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if got := kvmModules(dir); !cmp.Equal(got, []string{"kvm_intel", "kvm_pvm"}) {
		t.Errorf("kvmModules = %v, want [kvm_intel kvm_pvm]", got)
	}
}

func TestProbeArgs(t *testing.T) {
	got := strings.Join(probeArgs("/img/vmlinuz", Accel{KVM: true}), " ")
	want := "-name slicer-accel-probe -M microvm,acpi=on -accel kvm -cpu host -m 128 -smp 1 -nodefaults -no-user-config -display none -no-reboot" +
		" -kernel /img/vmlinuz -append " + probeCmdline + " -serial stdio"
	if got != want {
		t.Errorf("probeArgs =\n%s\nwant\n%s", got, want)
	}
	if got := probeArgs("/k", Accel{}); !strings.Contains(strings.Join(got, " "), "-accel tcg -cpu max") {
		t.Errorf("probeArgs under TCG = %v", got)
	}
}
