package guest

import (
	"errors"
	"testing"

	"github.com/openslicer/openslicer/api"
)

func TestParseUpstream(t *testing.T) {
	for _, tc := range []struct {
		in               string
		network, address string // empty: ErrInvalid
	}{
		{"127.0.0.1:8080", "tcp", "127.0.0.1:8080"},
		{"localhost:22", "tcp", "localhost:22"},
		{"[::1]:9000", "tcp", "[::1]:9000"},
		{"unix:/var/run/docker.sock", "unix", "/var/run/docker.sock"},
		{"", "", ""},
		{"8080", "", ""},
		{":8080", "", ""},
		{"host:0", "", ""},
		{"host:65536", "", ""},
		{"host:http", "", ""},
		{"unix:relative.sock", "", ""},
		{"unix:", "", ""},
		{"/var/run/docker.sock", "", ""},
	} {
		network, address, err := parseUpstream(tc.in)
		if tc.network == "" {
			if !errors.Is(err, api.ErrInvalid) {
				t.Errorf("parseUpstream(%q) = %q, %q, %v; want ErrInvalid", tc.in, network, address, err)
			}
			continue
		}
		if err != nil || network != tc.network || address != tc.address {
			t.Errorf("parseUpstream(%q) = %q, %q, %v; want %q, %q", tc.in, network, address, err, tc.network, tc.address)
		}
	}
}
