package qemu

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/openslicer/openslicer/internal/hypervisor"
)

// TestLiveDisks: the disks a save records are the images QEMU 7.2 reads
// and writes now, as its query-block answers say (testdata: answers of a
// machine started with a qcow2 disk and a read-only raw one, then after
// one and two blockdev-snapshot-sync of disk0, as layerDisks does), with
// the command line's read-only flags; answers that do not name every
// disk by a plain file are refused.
func TestLiveDisks(t *testing.T) {
	const (
		dir   = "/var/lib/slicer/disks/"
		root  = dir + "sbox-1.qcow2"
		seed  = dir + "sbox-1.seed.img"
		first = dir + "sbox-1.cmt-5f0c2a9e1b7d4c36.qcow2"
		again = dir + "sbox-1.cmt-a41e97d03c2b68f5.qcow2"
	)
	cmdline := []hypervisor.Disk{{Path: root, Format: "qcow2"}, {Path: seed, Format: "raw", ReadOnly: true}}
	withRoot := func(path string) []hypervisor.Disk {
		return []hypervisor.Disk{{Path: path, Format: "qcow2"}, {Path: seed, Format: "raw", ReadOnly: true}}
	}
	real := func(name string) string {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	for _, tc := range []struct {
		name  string
		disks []hypervisor.Disk
		ret   string
		want  []hypervisor.Disk
		err   string
	}{
		{"as booted", cmdline, real("query-block-boot.json"), withRoot(root), ""},
		{"after one overlay", cmdline, real("query-block-one-overlay.json"), withRoot(first), ""},
		{"after two overlays", cmdline, real("query-block-two-overlays.json"), withRoot(again), ""},
		{"no image block: file and drv", cmdline[:1],
			`[{"device":"disk0","inserted":{"file":"` + first + `","drv":"qcow2","ro":false}}]`,
			withRoot(first)[:1], ""},
		{"other devices ignored", cmdline[:1],
			`[{"device":"floppy0"},{"device":"disk01"},{"device":"disk0","inserted":{"file":"` + root + `","drv":"qcow2","image":{"filename":"` + root + `","format":"qcow2"}}}]`,
			cmdline[:1], ""},
		{"no disks", nil, `[]`, nil, ""},
		{"a disk missing", cmdline, `[{"device":"disk0","inserted":{"file":"` + root + `","drv":"qcow2"}}]`, nil, "no disk1"},
		{"a disk the command line lacks", cmdline[:1], real("query-block-boot.json"), nil, "disk1"},
		{"no medium", cmdline[:1], `[{"device":"disk0"}]`, nil, "no image"},
		{"no format", cmdline[:1], `[{"device":"disk0","inserted":{"file":"` + root + `"}}]`, nil, "format"},
		{"a json: pseudo file name", cmdline[:1],
			`[{"device":"disk0","inserted":{"file":"json:{\"driver\":\"qcow2\"}","drv":"qcow2"}}]`, nil, "absolute path"},
		{"not an answer", cmdline, `{"error":{}}`, nil, "decode"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := liveDisks(tc.disks, json.RawMessage(tc.ret))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("liveDisks = %+v, %v; want an error naming %q", got, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("liveDisks = %+v\nwant         %+v", got, tc.want)
			}
		})
	}
}

// TestLiveDisksLeavesCommandLine: the command line's disks are not changed
// in place.
func TestLiveDisksLeavesCommandLine(t *testing.T) {
	disks := []hypervisor.Disk{{Path: "/d/a.qcow2", Format: "qcow2"}}
	ret := `[{"device":"disk0","inserted":{"file":"/d/b.qcow2","drv":"qcow2"}}]`
	if _, err := liveDisks(disks, json.RawMessage(ret)); err != nil {
		t.Fatal(err)
	}
	if disks[0].Path != "/d/a.qcow2" {
		t.Errorf("the command line's disk became %q", disks[0].Path)
	}
}
