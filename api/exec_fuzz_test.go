package api_test

import (
	"errors"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/openslicer/openslicer/api"
)

// FuzzParseExecQuery feeds arbitrary query strings to ParseExecQuery, as the
// daemon and the agent receive them (url.URL.Query keeps what parses and
// drops the rest). A rejected query is an api.ErrInvalid naming a
// parameter; an accepted one obeys the request's rules and survives the
// trip through ExecRequest.Query and the wire unchanged.
func FuzzParseExecQuery(f *testing.F) {
	for _, s := range []string{
		"cmd=true",
		"cmd=sh&args=-c&args=echo+hi&env=A%3D1&uid=0&gid=0&cwd=%2Ftmp&stdio=base64",
		"cmd=cat&stdin=true",
		"cmd=ls&buffered=1&shell=%2Fbin%2Fsh&permissions=0644",
		"cmd=sleep&args=60&background=true&ring_bytes=1048576",
		"cmd=true&uid=4294967295&gid=4294967296",
		"cmd=true&stdin=true&buffered=true",
		"cmd=true&ring_bytes=-1",
		"cmd=true&stdio=hex",
		"cmd=a%00b&args=%00&cwd=..%2F..%2Fetc",
		"cmd=true&cmd=false&uid=1&uid=x",
		"args=only",
		"cmd=true;x=1&%zz",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, _ := url.ParseQuery(raw)
		req, err := api.ParseExecQuery(q)
		if err != nil {
			checkInvalid(t, raw, err)
			return
		}
		checkExecRequest(t, req)
		again, err := api.ParseExecQuery(wire(t, req))
		if err != nil {
			t.Fatalf("query %q: decoded %+v, but its own encoding is rejected: %v", raw, req, err)
		}
		if !sameRequest(req, again) {
			t.Fatalf("query %q: decode(encode(x)) != x:\n x  = %+v\n x' = %+v", raw, req, again)
		}
	})
}

// FuzzExecQueryRoundTrip builds an ExecRequest from arbitrary fields, as a
// client would, and checks that the daemon decodes its query back to the
// same request: decode(encode(x)) == x for every valid request, and
// anything it refuses breaks one of the rules ParseExecQuery documents.
func FuzzExecQueryRoundTrip(f *testing.F) {
	f.Add("true", "", "", int64(-1), int64(-1), "", "", "", "", false, false, false, int64(0))
	f.Add("sh", "-c\x00echo hi", "A=1\x00B=", int64(0), int64(0), "/tmp", "/bin/sh", "0644", "base64", true, false, false, int64(0))
	f.Add("sleep", "60", "", int64(1000), int64(4294967295), "~", "", "", "text", false, false, true, int64(1<<20))
	f.Add("x&y=z", "a b\x00%zz\x00", "=\x00;", int64(7), int64(-1), "a/../b", "", "", "", false, true, false, int64(0))
	f.Fuzz(func(t *testing.T, cmd, args, env string, uid, gid int64, cwd, shell, perms, stdio string, stdin, buffered, background bool, ring int64) {
		r := &api.ExecRequest{
			Command: cmd, Args: split(args), Env: split(env),
			UID: id(uid), GID: id(gid),
			Cwd: cwd, Shell: shell, Permissions: perms, Stdio: stdio,
			Stdin: stdin, Buffered: buffered, Background: background, RingBytes: ring,
		}
		got, err := api.ParseExecQuery(wire(t, r))
		valid := cmd != "" && !(stdin && buffered) && (stdio == "" || stdio == api.StdioText || stdio == api.StdioBase64)
		switch {
		case err != nil && valid:
			t.Fatalf("valid request %+v rejected: %v", r, err)
		case err != nil:
			checkInvalid(t, r.Query().Encode(), err)
			return
		case !valid:
			t.Fatalf("invalid request %+v accepted as %+v", r, got)
		}
		want := *r
		if want.Stdio == "" {
			want.Stdio = api.StdioText // the documented default
		}
		want.RingBytes = max(want.RingBytes, 0) // Query leaves out a ring size that is not positive
		if !sameRequest(&want, got) {
			t.Fatalf("decode(encode(x)) != x:\n x  = %+v\n x' = %+v", want, *got)
		}
	})
}

// wire is r's query as it travels: encoded, then parsed by the receiver.
func wire(t *testing.T, r *api.ExecRequest) url.Values {
	t.Helper()
	q, err := url.ParseQuery(r.Query().Encode())
	if err != nil {
		t.Fatalf("the encoding of %+v does not parse: %v", r, err)
	}
	return q
}

// checkInvalid checks a rejection: class ErrInvalid, and a message that
// names the parameter at fault.
func checkInvalid(t *testing.T, raw string, err error) {
	t.Helper()
	if !errors.Is(err, api.ErrInvalid) {
		t.Fatalf("query %q: error %v is not api.ErrInvalid", raw, err)
	}
	named := false
	for _, p := range []string{"cmd", "uid", "gid", "stdin", "buffered", "background", "ring_bytes", "stdio"} {
		named = named || strings.Contains(err.Error(), p)
	}
	if !named {
		t.Fatalf("query %q: error %q names no parameter", raw, err)
	}
}

// checkExecRequest checks the rules an accepted request always obeys.
func checkExecRequest(t *testing.T, r *api.ExecRequest) {
	t.Helper()
	switch {
	case r.Command == "":
		t.Fatalf("accepted a request without a command: %+v", r)
	case r.Stdio != api.StdioText && r.Stdio != api.StdioBase64:
		t.Fatalf("accepted stdio %q", r.Stdio)
	case r.Stdin && r.Buffered:
		t.Fatalf("accepted stdin with buffered: %+v", r)
	case r.RingBytes < 0:
		t.Fatalf("accepted ring_bytes %d", r.RingBytes)
	}
}

// sameRequest compares requests, taking a nil list and an empty one as the
// same (the wire cannot tell them apart).
func sameRequest(a, b *api.ExecRequest) bool {
	x, y := *a, *b
	for _, l := range []*[]string{&x.Args, &y.Args, &x.Env, &y.Env} {
		if len(*l) == 0 {
			*l = nil
		}
	}
	return reflect.DeepEqual(x, y)
}

// split turns a NUL-separated fuzz string into a list; "" is no list.
func split(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, "\x00")
}

// id is a uid or gid from a fuzz integer: out of uint32's range is "not
// given".
func id(n int64) *uint32 {
	if n < 0 || n > 1<<32-1 {
		return nil
	}
	u := uint32(n)
	return &u
}
