package guest

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestImageUser(t *testing.T) {
	accounts := parsePasswd([]byte(testPasswd))
	groups := parseGroup([]byte(testGroup))
	tests := []struct {
		spec   string
		want   account
		wantOK bool
	}{
		{"", account{}, false},
		{"other", account{Name: "other", UID: 1001, GID: 1002, Home: "/home/other"}, true},
		{"1001", account{Name: "other", UID: 1001, GID: 1002, Home: "/home/other"}, true},
		{"other:wheel", account{Name: "other", UID: 1001, GID: 10, Home: "/home/other"}, true},
		{"1001:999", account{Name: "other", UID: 1001, GID: 999, Home: "/home/other"}, true},
		{"other:", account{Name: "other", UID: 1001, GID: 1002, Home: "/home/other"}, true},
		{"65532", account{UID: 65532, GID: 0, Home: "/"}, true}, // distroless's nonroot, not in passwd
		{"65532:65532", account{UID: 65532, GID: 65532, Home: "/"}, true},
		{"nobody", account{}, false},        // a name the image does not list
		{"other:nogroup", account{}, false}, // a group it does not list
		{"root", account{Name: "root", Home: "/root"}, true},
	}
	for _, tt := range tests {
		got, ok := imageUser(tt.spec, accounts, groups)
		if ok != tt.wantOK {
			t.Errorf("imageUser(%q) ok = %v, want %v", tt.spec, ok, tt.wantOK)
			continue
		}
		if diff := cmp.Diff(tt.want, got, ignoreShell); diff != "" {
			t.Errorf("imageUser(%q) (-want +got):\n%s", tt.spec, diff)
		}
	}
}

func TestDefaultAccount(t *testing.T) {
	accounts := parsePasswd([]byte(testPasswd))
	groups := parseGroup([]byte(testGroup))
	slicer := account{Name: "slicer", UID: 1000, GID: 1000, Home: "/home/slicer"}
	root := account{Name: "root", Home: "/root"}
	tests := []struct {
		name     string
		user     string
		accounts []account
		want     account
	}{
		{"no User: uid 1000", "", accounts, slicer},
		{"a non-root User", "other", accounts, account{Name: "other", UID: 1001, GID: 1002, Home: "/home/other"}},
		{"root User: still the non-root uid 1000", "0:0", accounts, slicer},
		{"unknown User name: uid 1000", "app", accounts, slicer},
		{"no uid 1000: root", "", accounts[:2], root},
		{"no passwd: a bare root", "", nil, root},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, defaultAccount(tt.user, tt.accounts, groups), ignoreShell); diff != "" {
				t.Errorf("defaultAccount(%q) (-want +got):\n%s", tt.user, diff)
			}
		})
	}
}

func TestMergeEnv(t *testing.T) {
	got := mergeEnv(
		[]string{"PATH=/bin", "HOME=/root"},
		[]string{"LANG=C", "PATH=/usr/local/bin:/bin", "broken", "=x"},
		[]string{"HOME=/tmp", "EMPTY=", "LANG=de"},
	)
	want := []string{"PATH=/usr/local/bin:/bin", "HOME=/tmp", "LANG=de", "EMPTY="}
	if diff := cmp.Diff(want, got, ignoreShell); diff != "" {
		t.Errorf("mergeEnv (-want +got):\n%s", diff)
	}
}

// ignoreShell leaves the login shell out of comparing accounts: these
// tests are about which user, home and groups.
var ignoreShell = cmpopts.IgnoreFields(account{}, "Shell")
