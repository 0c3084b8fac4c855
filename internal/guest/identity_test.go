package guest

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openslicer/openslicer/api"
)

func TestPlanActor(t *testing.T) {
	groups := parseGroup([]byte(testGroup))
	slicer := account{Name: "slicer", UID: 1000, GID: 1000, Home: "/home/slicer"}
	other := account{Name: "other", UID: 1001, GID: 1002, Home: "/home/other"}
	unnamed := account{UID: 1234, GID: 5678, Home: "/"}
	root := account{Name: "root", Home: "/root"}
	tests := []struct {
		name       string
		acct       account
		euid, egid int
		want       actor
		forbidden  bool
	}{
		{
			name: "root takes the default user on, with its groups",
			acct: slicer,
			want: actor{account: slicer, groups: []uint32{1000, 999}, assume: true},
		},
		{
			name: "root takes a user on with every group listing it",
			acct: other,
			want: actor{account: other, groups: []uint32{1002, 999, 10}, assume: true},
		},
		{
			name: "root takes an unnamed uid on with no supplementary groups",
			acct: unnamed,
			want: actor{account: unnamed, assume: true},
		},
		{
			name: "root acting as root still goes through the identity switch",
			acct: root,
			want: actor{account: root, groups: []uint32{0}, assume: true},
		},
		{
			name: "an unprivileged agent is already its own user",
			acct: other, euid: 1001, egid: 1002,
			want: actor{account: other, groups: []uint32{1002, 999, 10}},
		},
		{
			name: "an unprivileged agent chowns to another group",
			acct: account{Name: "other", UID: 1001, GID: 27, Home: "/home/other"}, euid: 1001, egid: 1002,
			want: actor{account: account{Name: "other", UID: 1001, GID: 27, Home: "/home/other"}, groups: []uint32{27, 999, 10}, chownGID: true},
		},
		{
			name: "an unprivileged agent cannot act as root",
			acct: root, euid: 1001, egid: 1002, forbidden: true,
		},
		{
			name: "an unprivileged agent cannot act as another user",
			acct: slicer, euid: 1001, egid: 1002, forbidden: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := planActor(tt.acct, groups, tt.euid, tt.egid)
			if tt.forbidden {
				if !errors.Is(err, api.ErrForbidden) {
					t.Fatalf("planActor = %+v, %v; want forbidden", got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(actor{})); diff != "" {
				t.Errorf("planActor (-want +got):\n%s", diff)
			}
		})
	}
}

func TestActorOwner(t *testing.T) {
	a := actor{account: account{UID: 1001, GID: 27}, chownGID: true}
	if got, want := a.owner(), (owner{uid: 1001, gid: 27, chown: true}); got != want {
		t.Errorf("owner = %+v, want %+v", got, want)
	}
	a = actor{account: account{UID: 1000, GID: 1000}, assume: true}
	if got := a.owner(); got.chown {
		t.Errorf("an assumed identity owns what it creates; owner = %+v wants a chown", got)
	}
}
