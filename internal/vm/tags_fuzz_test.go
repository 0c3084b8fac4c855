package vm

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/config"
)

// FuzzTagUpdate applies an arbitrary PATCH /vm/{h}/tags body (decoded as
// the server decodes it) to an arbitrary tag list a VM could have, then
// validates the result as the manager does. A refusal is api.ErrInvalid.
// An accepted update obeys the tag rules: no empty or repeated tags, at
// most one name= tag, a name once set never changes or goes, replace
// keeps only the name and the new tags, and add/remove add and remove
// exactly what they say. Name validation accepts only lowercase DNS
// labels that do not look like a generated hostname.
func FuzzTagUpdate(f *testing.F) {
	for _, s := range []struct{ current, body string }{
		{"a", `{"add":["b","a"]}`},
		{"a\x00b", `{"remove":["a"]}`},
		{"name=web\x00a", `{"replace":["x"]}`},
		{"name=web", `{"replace":[]}`},
		{"name=web", `{"replace":["name=web"]}`},
		{"", `{"replace":["x"],"add":["y"]}`},
		{"name=web", `{"remove":["name=web"]}`},
		{"name=web", `{"add":["name=db"]}`},
		{"a", `{"add":["name=web"]}`},
		{"", `{"name":"web"}`},
		{"name=web", `{"name":"db"}`},
		{"", `{"name":"sbox-12"}`},
		{"", `{"name":"Web_1"}`},
		{"", `{"name":"` + strings.Repeat("a", 64) + `"}`},
		{"", `{"add":["", "name=", "name=a\u0000b", "x=y=z"]}`},
		{"", `{"add":["name=a","name=b"]}`},
		{"", `{"add":null,"remove":null,"replace":null}`},
		{"", `[]`},
	} {
		f.Add(s.current, []byte(s.body))
	}
	groups := []config.HostGroup{{Name: "sbox"}, {Name: "web-x"}}
	f.Fuzz(func(t *testing.T, current string, body []byte) {
		var u api.VMTagUpdate
		if json.Unmarshal(body, &u) != nil {
			return
		}
		// A VM's tags are what an earlier update left: start from one.
		var cur []string
		if current != "" {
			var err error
			if cur, err = applyTagUpdate(nil, api.VMTagUpdate{Add: strings.Split(current, "\x00")}); err != nil {
				return
			}
		}
		out, err := applyTagUpdate(cur, u)
		if err != nil {
			if !errors.Is(err, api.ErrInvalid) {
				t.Fatalf("applyTagUpdate(%q, %s): error %v is not api.ErrInvalid", cur, body, err)
			}
			return
		}
		checkTagRules(t, cur, u, out)
		if err := checkNameTags(out, groups); err != nil {
			if !errors.Is(err, api.ErrInvalid) {
				t.Fatalf("checkNameTags(%q): error %v is not api.ErrInvalid", out, err)
			}
			return
		}
		if name, ok := friendlyName(out); ok {
			if !dnsLabel.MatchString(name) || strings.HasPrefix(name, "sbox-") && isDigits(name[len("sbox-"):]) {
				t.Fatalf("checkNameTags accepted the name %q", name)
			}
		}
	})
}

// checkTagRules checks the result of applying u to cur.
func checkTagRules(t *testing.T, cur []string, u api.VMTagUpdate, out []string) {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("apply %+v to %q = %q: "+format, append([]any{u, cur, out}, args...)...)
	}
	if out == nil {
		fail("nil, want a list")
	}
	seen := map[string]bool{}
	for _, tag := range out {
		switch {
		case tag == "":
			fail("an empty tag")
		case seen[tag]:
			fail("%q twice", tag)
		}
		seen[tag] = true
	}
	if countName(out) > 1 {
		fail("more than one name= tag")
	}
	oldName, had := friendlyName(cur)
	if newName, has := friendlyName(out); had && (!has || newName != oldName) {
		fail("the name %q changed", oldName)
	}
	var want []string // what the result must hold, in order, but the name
	if u.Replace != nil {
		want = appendUnique(nil, *u.Replace...)
	} else {
		for _, tag := range cur {
			if !slices.Contains(u.Remove, tag) || strings.HasPrefix(tag, namePrefix) {
				want = append(want, tag)
			}
		}
		want = appendUnique(want, u.Add...)
	}
	if u.Name != nil {
		want = appendUnique(want, namePrefix+*u.Name)
	}
	got := slices.DeleteFunc(slices.Clone(out), func(s string) bool { return strings.HasPrefix(s, namePrefix) })
	want = slices.DeleteFunc(want, func(s string) bool { return strings.HasPrefix(s, namePrefix) })
	if !slices.Equal(got, want) {
		fail("tags other than the name are %q, want %q", got, want)
	}
}

// appendUnique is the oracle's own: it appends add to tags in order,
// skipping empty tags (an update drops them) and those already there.
func appendUnique(tags []string, add ...string) []string {
	for _, t := range add {
		if t != "" && !slices.Contains(tags, t) {
			tags = append(tags, t)
		}
	}
	return tags
}
