package guest

import (
	"fmt"
	"net"
	"path"
	"strconv"
	"strings"

	"github.com/openslicer/openslicer/api"
)

// parseUpstream reads the upstream of a forward (spec §3.12): "host:port"
// is TCP, "unix:/path" a unix socket. Errors wrap api.ErrInvalid.
func parseUpstream(s string) (network, address string, err error) {
	bad := func(why string) (string, string, error) {
		return "", "", fmt.Errorf("%w: upstream %q: %s", api.ErrInvalid, s, why)
	}
	if s == "" {
		return bad("is required (host:port or unix:/path)")
	}
	if p, ok := strings.CutPrefix(s, "unix:"); ok {
		if !path.IsAbs(p) {
			return bad("a unix socket needs an absolute path")
		}
		return "unix", p, nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return bad("want host:port or unix:/path")
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return bad("the port must be a number from 1 to 65535")
	}
	if host == "" {
		return bad("the host is missing")
	}
	return "tcp", s, nil
}
