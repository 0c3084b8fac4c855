package qemu

import (
	"encoding/json"
	"testing"

	"github.com/openslicer/openslicer/internal/hypervisor"
)

// TestShapeFromArgs: the shape read back from a command line Args built is
// the shape of the spec it was built from, so a suspend's manifest (read
// from the process) and a restore's check (from the spec) agree.
func TestShapeFromArgs(t *testing.T) {
	full := baseSpec()
	full.Disks = []hypervisor.Disk{
		{Path: "/d/root,1.qcow2", Format: "qcow2"},
		{Path: "/d/seed.img", ReadOnly: true},
	}
	full.TAP, full.MAC = "tap-vm1", "52:54:00:12:34:56"
	noInitrd := baseSpec()
	noInitrd.Initrd = ""
	noInitrd.Disks = nil
	restore := baseSpec()
	restore.RestoreFrom = "/var/lib/slicer/sbox-1.state"
	tapOnly := baseSpec()
	tapOnly.TAP = "tap0"
	unlinked := baseSpec()
	unlinked.UnlinkedNIC, unlinked.MAC = true, "02:00:00:00:00:07"

	tests := []struct {
		name  string
		spec  hypervisor.Spec
		accel Accel
	}{
		{"tcg, one disk", baseSpec(), Accel{TSCkHz: 2096035}},
		{"kvm, two disks, a nic, a comma in a path", full, Accel{KVM: true}},
		{"no initrd, no disk", noInitrd, Accel{}},
		{"a restored machine", restore, Accel{}},
		{"a nic without a mac", tapOnly, Accel{}},
		{"an unlinked nic (a template's)", unlinked, Accel{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args, err := Args(tt.spec, tt.accel)
			if err != nil {
				t.Fatal(err)
			}
			// As read from /proc: the binary first.
			got, err := shapeFromArgs(append([]string{"/usr/bin/qemu-system-x86_64"}, args...))
			if err != nil {
				t.Fatalf("shapeFromArgs: %v", err)
			}
			want := hypervisor.ShapeOf(tt.spec, tt.accel.String())
			gj, _ := json.Marshal(got)
			wj, _ := json.Marshal(want)
			if string(gj) != string(wj) {
				t.Errorf("shapeFromArgs = %s\nwant            %s", gj, wj)
			}
			if diffs := want.Differences(got); len(diffs) > 0 {
				t.Errorf("Differences = %q", diffs)
			}
		})
	}
}

func TestShapeFromArgsNotOurs(t *testing.T) {
	if _, err := shapeFromArgs([]string{"sleep", "100"}); err == nil {
		t.Error("shapeFromArgs of an unrelated command line succeeded")
	}
}

func TestSplitOpts(t *testing.T) {
	got := splitOpts("if=none,file=/a,,b,,,c=d")
	want := []string{"if=none", "file=/a,b,", "c=d"}
	if len(got) != len(want) {
		t.Fatalf("splitOpts = %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("splitOpts = %q, want %q", got, want)
		}
	}
}
