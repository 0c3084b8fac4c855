package network

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var (
	testOwner  = owner{"slicer", "0a1b2c3d"}
	otherTest  = owner{"slicer", "9f8e7d6c"}
	legacyTest = owner{prefix: "slicer"}
)

// The names are how a daemon finds its objects again after a restart or
// an upgrade: any change here orphans every object made before it, so the
// expected values are written out.
func TestOwnerNames(t *testing.T) {
	tests := []struct {
		name string
		got  string
		want string
	}{
		{"vm table", testOwner.vmTable("sbox-1"), "slicer-0a1b2c3d-vm-sbox-1"},
		{"group table", testOwner.groupTable("vm"), "slicer-0a1b2c3d-group-vm"},
		{"netns", testOwner.netnsName("sbox-1"), "slicer-0a1b2c3d-vm-sbox-1"},
		{"vm alias", testOwner.vmAlias("sbox-1"), "slicer/0a1b2c3d/vm/sbox-1"},
		{"group alias", testOwner.groupAlias("vm"), "slicer/0a1b2c3d/group/vm"},
		{"host veth", testOwner.hostVeth("sbox-1"), "slvc4y6qd3vhm3m"},
		{"host veth of another daemon", otherTest.hostVeth("sbox-1"), "slvmx6pqxvtgr4q"},
		{"rule tag", testOwner.ruleTag(), "slicer/0a1b2c3d"},
		// Names before instance ids, as they were.
		{"legacy vm table", legacyTest.vmTable("sbox-1"), "slicer-vm-sbox-1"},
		{"legacy group table", legacyTest.groupTable("vm"), "slicer-group-vm"},
		{"legacy netns", legacyTest.netnsName("sbox-1"), "slicer-sbox-1"},
		{"legacy vm alias", legacyTest.vmAlias("sbox-1"), "slicer/vm/sbox-1"},
		{"legacy group alias", legacyTest.groupAlias("vm"), "slicer/group/vm"},
		{"legacy host veth", legacyTest.hostVeth("sbox-1"), "sbox-1"},
		{"legacy rule tag", legacyTest.ruleTag(), "slicer"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s = %q, want %q", tt.name, tt.got, tt.want)
		}
	}
}

func TestHostVethFitsAndDiffers(t *testing.T) {
	seen := map[string]string{}
	for _, o := range []owner{testOwner, otherTest, {"slicertest", "0a1b2c3d"}} {
		for _, vm := range []string{"a-1", "sbox-1", "sbox-2", strings.Repeat("x", 60) + "-1"} {
			n := o.hostVeth(vm)
			if len(n) != maxIfName || !strings.HasPrefix(n, vethPrefix) || strings.Trim(n, "abcdefghijklmnopqrstuvwxyz234567") != "" {
				t.Errorf("hostVeth(%v, %q) = %q: want %d lowercase characters beginning %q", o, vm, n, maxIfName, vethPrefix)
			}
			key := o.prefix + "/" + o.instance + "/" + vm
			if prev, ok := seen[n]; ok {
				t.Errorf("hostVeth: %s and %s share %q", prev, key, n)
			}
			seen[n] = key
		}
	}
}

func TestParseNames(t *testing.T) {
	vm := func(who ownership, id, name string) object {
		return object{who: who, instance: id, kind: "vm", name: name}
	}
	group := func(who ownership, id, name string) object {
		return object{who: who, instance: id, kind: "group", name: name}
	}
	tests := []struct {
		what  string // "alias", "table" or "netns"
		input string
		want  object
	}{
		{"alias", "slicer/0a1b2c3d/vm/sbox-1", vm(mine, "0a1b2c3d", "sbox-1")},
		{"alias", "slicer/0a1b2c3d/group/vm", group(mine, "0a1b2c3d", "vm")},
		{"alias", "slicer/9f8e7d6c/vm/sbox-1", vm(otherOwner, "9f8e7d6c", "sbox-1")},
		{"alias", "slicer/vm/sbox-1", vm(legacyName, "", "sbox-1")},
		{"alias", "slicer/group/vm", group(legacyName, "", "vm")},
		{"alias", "slicertest/0a1b2c3d/vm/sbox-1", object{}}, // another prefix
		{"alias", "slicer/0a1b2c3/vm/sbox-1", object{}},      // not an id
		{"alias", "slicer/0a1b2c3d/disk/sbox-1", object{}},
		{"alias", "slicer/0a1b2c3d/vm/", object{}},
		{"alias", "", object{}},
		{"alias", "uplink to the lab", object{}},
		{"table", "slicer-0a1b2c3d-vm-sbox-1", vm(mine, "0a1b2c3d", "sbox-1")},
		{"table", "slicer-0a1b2c3d-group-vm", group(mine, "0a1b2c3d", "vm")},
		{"table", "slicer-9f8e7d6c-group-vm", group(otherOwner, "9f8e7d6c", "vm")},
		{"table", "slicer-vm-sbox-1", vm(legacyName, "", "sbox-1")},
		// The default group "vm": legacy "slicer-vm-vm-1" is not an id.
		{"table", "slicer-vm-vm-1", vm(legacyName, "", "vm-1")},
		{"table", "slicer-group-deadbeef", group(legacyName, "", "deadbeef")},
		{"table", "slicertest-0a1b2c3d-vm-x-1", object{}},
		{"table", "filter", object{}},
		{"table", "slicer-0a1b2c3d-nat", object{}},
		{"netns", "slicer-0a1b2c3d-vm-sbox-1", vm(mine, "0a1b2c3d", "sbox-1")},
		{"netns", "slicer-9f8e7d6c-vm-sbox-1", vm(otherOwner, "9f8e7d6c", "sbox-1")},
		{"netns", "slicer-sbox-1", vm(legacyName, "", "sbox-1")},
		{"netns", "slicer-vm-1", vm(legacyName, "", "vm-1")},
		{"netns", "slicertest-0a1b2c3d-vm-sbox-1", object{}},
		{"netns", "slicer-", object{}},
		{"netns", "cni-1234", object{}},
	}
	for _, tt := range tests {
		var got object
		switch tt.what {
		case "alias":
			got = testOwner.parseAlias(tt.input)
		case "table":
			got = testOwner.parseTable(tt.input)
		case "netns":
			got = testOwner.parseNetNS(tt.input)
		}
		if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(object{})); diff != "" {
			t.Errorf("parse %s %q (-want +got):\n%s", tt.what, tt.input, diff)
		}
	}
}

// Every name an owner makes parses back to it, and a legacy name to the
// legacy owner.
func TestNamesRoundTrip(t *testing.T) {
	for _, o := range []owner{testOwner, legacyTest} {
		who := mine
		if o.legacy() {
			who = legacyName
		}
		want := object{who: who, instance: o.instance, kind: "vm", name: "vm-12"}
		for what, got := range map[string]object{
			"alias": testOwner.parseAlias(o.vmAlias("vm-12")),
			"table": testOwner.parseTable(o.vmTable("vm-12")),
			"netns": testOwner.parseNetNS(o.netnsName("vm-12")),
		} {
			if got != want {
				t.Errorf("%s of %v parses as %+v, want %+v", what, o, got, want)
			}
		}
		if got := testOwner.parseAlias(o.groupAlias("vm")); got.kind != "group" || got.who != who {
			t.Errorf("group alias of %v parses as %+v", o, got)
		}
		if got := testOwner.parseTable(o.groupTable("vm")); got.kind != "group" || got.who != who {
			t.Errorf("group table of %v parses as %+v", o, got)
		}
	}
}

func TestCheckInstance(t *testing.T) {
	for id, ok := range map[string]bool{
		"0a1b2c3d": true, "ffffffff": true,
		"": false, "0a1b2c3": false, "0a1b2c3d0": false, "0A1B2C3D": false, "0a1b-c3d": false, "ghijklmn": false,
	} {
		if err := CheckInstance(id); (err == nil) != ok {
			t.Errorf("CheckInstance(%q) = %v, want ok %v", id, err, ok)
		}
	}
}
