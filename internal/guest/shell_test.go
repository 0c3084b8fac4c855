package guest

import (
	"errors"
	"net/http"
	"net/url"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/agent"
)

func shellUint32(v uint32) *uint32 { return &v }

func TestParseShellQuery(t *testing.T) {
	for _, tc := range []struct {
		query   string
		want    shellRequest
		wantErr bool
	}{
		{"", shellRequest{}, false},
		{"uid=0", shellRequest{UID: shellUint32(0)}, false},
		{"uid=1000&gid=27&shell=bash&cwd=~/src", shellRequest{UID: shellUint32(1000), GID: shellUint32(27), Shell: "bash", Cwd: "~/src"}, false},
		{"uid=-1", shellRequest{}, true},
		{"gid=root", shellRequest{}, true},
		{"uid=4294967296", shellRequest{}, true},
	} {
		q, _ := url.ParseQuery(tc.query)
		got, err := parseShellQuery(q)
		if tc.wantErr {
			if !errors.Is(err, api.ErrInvalid) {
				t.Errorf("parseShellQuery(%q) error = %v, want ErrInvalid", tc.query, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("parseShellQuery(%q): %v", tc.query, err)
			continue
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("parseShellQuery(%q) (-want +got):\n%s", tc.query, diff)
		}
	}
}

func TestLoginShell(t *testing.T) {
	passwd := []byte(`root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
sync:x:4:65534:sync:/bin:/bin/sync
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
# a comment
slicer:x:1000:1000::/home/slicer:/bin/sh
blank:x:1001:1001::/home/blank:
bad:x:notanumber:0::/:/bin/zsh
`)
	for _, tc := range []struct {
		uid  uint32
		want string
	}{
		{0, "/bin/bash"},
		{1, ""},
		{4, "/bin/sync"},
		{65534, ""},
		{1000, "/bin/sh"},
		{1001, ""},
		{2000, ""},
	} {
		if got := loginShell(passwd, tc.uid); got != tc.want {
			t.Errorf("loginShell(uid %d) = %q, want %q", tc.uid, got, tc.want)
		}
	}
	if got := loginShell(nil, 0); got != "" {
		t.Errorf("loginShell(no passwd) = %q, want empty", got)
	}
}

func TestLoginArgv0(t *testing.T) {
	for in, want := range map[string]string{"/bin/sh": "-sh", "/usr/bin/bash": "-bash", "zsh": "-zsh"} {
		if got := loginArgv0(in); got != want {
			t.Errorf("loginArgv0(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestWantsUpgrade(t *testing.T) {
	for _, tc := range []struct {
		name string
		hdr  http.Header
		want bool
	}{
		{"exact", http.Header{"Connection": {"Upgrade"}, "Upgrade": {"slicer-shell"}}, true},
		{"case and lists", http.Header{"Connection": {"keep-alive, upgrade"}, "Upgrade": {"SLICER-SHELL"}}, true},
		{"two values", http.Header{"Connection": {"keep-alive", "Upgrade"}, "Upgrade": {"slicer-shell"}}, true},
		{"other protocol", http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}}, false},
		{"no connection", http.Header{"Upgrade": {"slicer-shell"}}, false},
		{"no upgrade", http.Header{"Connection": {"Upgrade"}}, false},
	} {
		r := &http.Request{Header: tc.hdr}
		if got := wantsUpgrade(r, agent.ShellProtocol); got != tc.want {
			t.Errorf("%s: wantsUpgrade(%v) = %v, want %v", tc.name, tc.hdr, got, tc.want)
		}
	}
}
