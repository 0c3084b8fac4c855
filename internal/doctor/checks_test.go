package doctor

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/openslicer/openslicer/internal/hypervisor/qemu"
	"github.com/openslicer/openslicer/internal/network"
)

func TestQEMUResult(t *testing.T) {
	tests := []struct {
		name       string
		found      bool
		out        string
		err        error
		want       Status
		wantDetail string
	}{
		{"debian 12", true, "QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\nCopyright (c) 2003-2022 Fabrice Bellard\n", nil, OK, "7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3) (/usr/bin/qemu-system-x86_64)"},
		{"missing", false, "", nil, Fail, "not found in PATH"},
		{"does not run", true, "error while loading shared libraries\n", errors.New("exit status 127"), Fail, "--version failed: exit status 127: error while loading shared libraries"},
		{"not qemu", true, "hello\n", nil, Fail, `printed "hello"`},
	}
	for _, tt := range tests {
		r := qemuResult("/usr/bin/qemu-system-x86_64", tt.found, []byte(tt.out), tt.err)
		if r.Status != tt.want || !strings.Contains(r.Detail, tt.wantDetail) {
			t.Errorf("%s: qemuResult = %s %q; want %s containing %q", tt.name, r.Status, r.Detail, tt.want, tt.wantDetail)
		}
		if (r.Status == Fail) != (r.Fix != "") {
			t.Errorf("%s: fix %q with status %s", tt.name, r.Fix, r.Status)
		}
	}
}

func TestAccelResult(t *testing.T) {
	check := func(name string, ok bool) qemu.AccelCheck { return qemu.AccelCheck{Name: name, OK: ok} }
	pvm := qemu.AccelDecision{Accelerator: "tcg", Mode: qemu.AccelAuto,
		Reason: "/dev/kvm is served by kvm_pvm only, which boots only PVM guest kernels",
		Checks: []qemu.AccelCheck{check(qemu.CheckDevKVM, true), check(qemu.CheckAPIVersion, true),
			check(qemu.CheckCreateVM, true), check(qemu.CheckHWModule, false)}}
	probed := qemu.AccelDecision{Accelerator: "kvm", Mode: qemu.AccelAuto, Reason: "the kernel printed under KVM",
		Probe: &qemu.BootProbe{OK: true, Took: 312 * time.Millisecond}}
	cached := qemu.AccelDecision{Accelerator: "kvm", Mode: qemu.AccelAuto, Reason: "the kernel printed under KVM", CacheHit: true}
	checksPass := qemu.AccelDecision{Mode: qemu.AccelAuto, Checks: []qemu.AccelCheck{check(qemu.CheckDevKVM, true)}}
	tests := []struct {
		name   string
		d      qemu.AccelDecision
		err    error
		probed bool
		want   Status
		says   []string
	}{
		{"no /dev/kvm", qemu.AccelDecision{Accelerator: "tcg", Mode: qemu.AccelAuto, Reason: "this host has no /dev/kvm",
			Checks: []qemu.AccelCheck{check(qemu.CheckDevKVM, false)}}, nil, true, Warn,
			[]string{"tcg: this host has no /dev/kvm", qemu.CheckDevKVM + ": FAILED"}},
		{"pvm only", pvm, nil, true, Warn, []string{"tcg:", "kvm_pvm", qemu.CheckHWModule + ": FAILED", qemu.CheckCreateVM + ": ok"}},
		{"kvm by probe", probed, nil, true, OK, []string{"kvm:", "boot probe took 312ms"}},
		{"kvm from cache", cached, nil, true, OK, []string{"kvm:", "from the cache"}},
		{"forced tcg", qemu.AccelDecision{Accelerator: "tcg", Mode: qemu.AccelTCG, Reason: "tcg was asked for"}, nil, true, Warn, []string{"tcg: tcg was asked for"}},
		{"forced kvm fails", qemu.AccelDecision{Mode: qemu.AccelKVM}, errors.New("accel kvm: this host has no /dev/kvm: use --accel auto or tcg"),
			true, Fail, []string{"accel kvm: this host has no /dev/kvm"}},
		{"checks pass, no kernel yet", checksPass, errors.New("accel auto: no guest kernel to probe KVM with"), false, Warn,
			[]string{"the KVM checks pass", "boot probe at the first `slicer up`"}},
	}
	for _, tt := range tests {
		r := AccelResult(tt.d, tt.err, tt.probed)
		if r.Check != "accelerator" || r.Status != tt.want {
			t.Errorf("%s: AccelResult = %s %s %q; want accelerator %s", tt.name, r.Check, r.Status, r.Detail, tt.want)
		}
		for _, s := range tt.says {
			if !strings.Contains(r.Detail, s) {
				t.Errorf("%s: detail %q does not say %q", tt.name, r.Detail, s)
			}
		}
		if (r.Status == OK) != (r.Fix == "") {
			t.Errorf("%s: status %s with fix %q", tt.name, r.Status, r.Fix)
		}
	}
}

func TestKernelResult(t *testing.T) {
	const meta = "linux-image-cloud-amd64"
	tests := []struct {
		name        string
		cached, pkg string
		err         error
		want        Status
		says        string
	}{
		{"cached package, apt broken", "/img/debs/linux-image-6.1.0-56-cloud-amd64_6.1.192-2_amd64.deb", "", errors.New("no lists"), OK, "apt's lists do not know"},
		{"cached package, apt fine", "/img/debs/x.deb", "linux-image-6.1.0-56-cloud-amd64", nil, OK, "cached /img/debs/x.deb, so builds do not ask apt; apt knows"},
		{"apt knows it", "", "linux-image-6.1.0-56-cloud-amd64", nil, OK, "apt knows linux-image-cloud-amd64: linux-image-6.1.0-56-cloud-amd64"},
		{"apt does not", "", "", errors.New("apt-cache depends: E: No packages found"), Fail, "No packages found"},
	}
	for _, tt := range tests {
		r := kernelResult(meta, tt.cached, tt.pkg, tt.err)
		if r.Status != tt.want || !strings.Contains(r.Detail, tt.says) {
			t.Errorf("%s: kernelResult = %+v; want %s containing %q", tt.name, r, tt.want, tt.says)
		}
		if r.Status == Fail && !strings.Contains(r.Fix, "apt-get update") {
			t.Errorf("%s: fix %q does not say apt-get update", tt.name, r.Fix)
		}
	}
}

func TestNetworkResults(t *testing.T) {
	allOK := network.Probe{}
	noBridge := network.Probe{Bridge: errors.New("create bridge sdoc1br: operation not supported")}
	tests := []struct {
		name       string
		networked  bool
		root       bool
		probe      network.Probe
		groupsErr  error
		want       []Status // tun, nftables, netns, veth, bridge, config networks
		bridgeFix  string
		configSays string
	}{
		{"root, no networks, all made", false, true, allOK, nil, []Status{OK, OK, OK, OK, OK, OK}, "", "no host group has a network"},
		{"root, no networks, no bridge: only a warning", false, true, noBridge, nil, []Status{OK, OK, OK, OK, Warn, OK}, "modprobe bridge", ""},
		{"root, networks, no bridge: a blocker", true, true, noBridge, nil, []Status{OK, OK, OK, OK, Fail, OK}, "modprobe bridge", "free on this host"},
		{"root, networks clash with the host", true, true, allOK, errors.New("host group \"a\": network.gateway overlaps\nhost group \"b\": x"), []Status{OK, OK, OK, OK, OK, Fail}, "", `overlaps; host group "b"`},
		{"not root: nothing probed, nothing blocks", true, false, network.Probe{}, nil, []Status{Warn, Warn, Warn, Warn, Warn, Warn}, "", "needs root"},
	}
	for _, tt := range tests {
		rs := networkResults(tt.networked, tt.root, tt.probe, tt.groupsErr)
		if len(rs) != len(tt.want) {
			t.Fatalf("%s: %d results, want %d", tt.name, len(rs), len(tt.want))
		}
		for i, r := range rs {
			if r.Status != tt.want[i] {
				t.Errorf("%s: %s = %s (%s); want %s", tt.name, r.Check, r.Status, r.Detail, tt.want[i])
			}
		}
		if tt.bridgeFix != "" && rs[4].Fix != tt.bridgeFix {
			t.Errorf("%s: bridge fix %q; want %q", tt.name, rs[4].Fix, tt.bridgeFix)
		}
		if !strings.Contains(rs[5].Detail, tt.configSays) {
			t.Errorf("%s: config networks detail %q; want it to contain %q", tt.name, rs[5].Detail, tt.configSays)
		}
	}
}

func TestDirResult(t *testing.T) {
	tests := []struct {
		name              string
		dir, existing     string
		free              uint64
		statErr, writeErr error
		want              Status
		says              string
	}{
		{"plenty", "/var/lib/slicer/images", "/var/lib/slicer/images", 20 << 30, nil, nil, OK, "20.0 GiB free"},
		{"not created yet", "/data/x/images", "/data", 20 << 30, nil, nil, OK, "to be created in /data"},
		{"tight", "/d", "/d", 2 << 30, nil, nil, Warn, "may not fit"},
		{"full", "/d", "/d", 100 << 20, nil, nil, Fail, "only 100 MiB free"},
		{"read-only", "/d", "/d", 20 << 30, nil, errors.New("read-only file system"), Fail, "not writable"},
		{"statfs fails", "/d", "/d", 0, errors.New("permission denied"), nil, Fail, "permission denied"},
	}
	for _, tt := range tests {
		r := dirResult("data directory", tt.dir, tt.existing, tt.free, tt.statErr, tt.writeErr)
		if r.Status != tt.want || !strings.Contains(r.Detail, tt.says) {
			t.Errorf("%s: dirResult = %s %q; want %s containing %q", tt.name, r.Status, r.Detail, tt.want, tt.says)
		}
	}
}

func TestSummary(t *testing.T) {
	ok := summarize([]Result{{Check: "a", Status: OK}, {Check: "b", Status: Warn}})
	if !ok.OK || ok.Summary() != "slicer up can run on this host (1 warning)." {
		t.Errorf("warnings only: OK %v, %q", ok.OK, ok.Summary())
	}
	bad := summarize([]Result{{Check: "a", Status: Fail}, {Check: "b", Status: Warn}, {Check: "c", Status: Fail}})
	if bad.OK || bad.Summary() != "slicer up cannot run on this host: 2 blockers (and 1 warning)." {
		t.Errorf("blockers: OK %v, %q", bad.OK, bad.Summary())
	}
}
