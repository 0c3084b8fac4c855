package vm

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/config"
)

func strs(s ...string) *[]string { return &s }
func sp(s string) *string        { return &s }

func TestApplyTagUpdate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		current []string
		update  api.VMTagUpdate
		want    []string
		wantErr bool
	}{
		{"add", []string{"a"}, api.VMTagUpdate{Add: []string{"b", "a"}}, []string{"a", "b"}, false},
		{"remove", []string{"a", "b"}, api.VMTagUpdate{Remove: []string{"a"}}, []string{"b"}, false},
		{"add and remove", []string{"a"}, api.VMTagUpdate{Add: []string{"c"}, Remove: []string{"a"}}, []string{"c"}, false},
		{"replace keeps name", []string{"name=web", "a"}, api.VMTagUpdate{Replace: strs("x")}, []string{"name=web", "x"}, false},
		{"replace empty clears mutable", []string{"name=web", "a"}, api.VMTagUpdate{Replace: strs()}, []string{"name=web"}, false},
		{"replace empty no name", []string{"a"}, api.VMTagUpdate{Replace: strs()}, []string{}, false},
		{"replace with name rejected", []string{"name=web"}, api.VMTagUpdate{Replace: strs("name=web")}, nil, true},
		{"replace with add rejected", nil, api.VMTagUpdate{Replace: strs("x"), Add: []string{"y"}}, nil, true},
		{"remove name rejected", []string{"name=web"}, api.VMTagUpdate{Remove: []string{"name=web"}}, nil, true},
		{"change name rejected", []string{"name=web"}, api.VMTagUpdate{Add: []string{"name=db"}}, nil, true},
		{"first name allowed", []string{"a"}, api.VMTagUpdate{Add: []string{"name=web"}}, []string{"a", "name=web"}, false},
		{"Name field assigns", nil, api.VMTagUpdate{Name: sp("web")}, []string{"name=web"}, false},
		{"Name field same is a no-op", []string{"name=web"}, api.VMTagUpdate{Name: sp("web")}, []string{"name=web"}, false},
		{"Name field change rejected", []string{"name=web"}, api.VMTagUpdate{Name: sp("db")}, nil, true},
		{"add keeps order, appends new", []string{"a", "b"}, api.VMTagUpdate{Add: []string{"c", "b", "d"}}, []string{"a", "b", "c", "d"}, false},
		{"add ignores empty and duplicates", nil, api.VMTagUpdate{Add: []string{"x", "", "x"}}, []string{"x"}, false},
		{"remove and add the same tag moves it last", []string{"a", "b"}, api.VMTagUpdate{Add: []string{"a"}, Remove: []string{"a"}}, []string{"b", "a"}, false},
		{"remove of an absent tag is a no-op", []string{"a"}, api.VMTagUpdate{Remove: []string{"zz"}}, []string{"a"}, false},
		{"remove keeps name", []string{"name=web", "a"}, api.VMTagUpdate{Remove: []string{"a"}}, []string{"name=web"}, false},
		{"replace deduplicates", []string{"a"}, api.VMTagUpdate{Replace: strs("x", "x", "y")}, []string{"x", "y"}, false},
		{"empty update keeps tags", []string{"a", "name=web"}, api.VMTagUpdate{}, []string{"a", "name=web"}, false},
		{"add name with Name field, same value", nil, api.VMTagUpdate{Add: []string{"name=web"}, Name: sp("web")}, []string{"name=web"}, false},
		{"two names at once rejected", nil, api.VMTagUpdate{Add: []string{"name=web", "name=db"}}, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := applyTagUpdate(tc.current, tc.update)
			if tc.wantErr {
				if !errors.Is(err, api.ErrInvalid) {
					t.Fatalf("applyTagUpdate = %v, %v; want ErrInvalid", got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("tags (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCheckNameTags(t *testing.T) {
	groups := []config.HostGroup{{Name: "sbox"}}
	for tags, ok := range map[*[]string]bool{
		strs("a=1"):                              true,
		strs("name=web-1"):                       true,
		strs("name=Web"):                         false,
		strs("name=sbox-3"):                      false,
		strs("name=a", "name=b"):                 false,
		strs("name=" + string(make([]byte, 64))): false,
	} {
		if err := checkNameTags(*tags, groups); (err == nil) != ok {
			t.Errorf("checkNameTags(%q) = %v, want ok=%v", *tags, err, ok)
		}
	}
}

func TestTagLimits(t *testing.T) {
	many := func(n int, prefix string) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf("%s%d", prefix, i)
		}
		return out
	}
	long := strings.Repeat("x", api.MaxTagBytes)
	for _, tc := range []struct {
		name    string
		current []string
		update  api.VMTagUpdate
		wantErr string // "" for success
	}{
		{"add up to the limit", many(api.MaxTagsPerVM-1, "a"), api.VMTagUpdate{Add: []string{"b"}}, ""},
		{"add past the limit", many(api.MaxTagsPerVM, "a"), api.VMTagUpdate{Add: []string{"b"}}, "at most 256 tags"},
		{"replace at the limit", nil, api.VMTagUpdate{Replace: strs(many(api.MaxTagsPerVM, "a")...)}, ""},
		{"replace past the limit", nil, api.VMTagUpdate{Replace: strs(many(api.MaxTagsPerVM+1, "a")...)}, "at most 256 tags"},
		{"duplicates do not count", nil, api.VMTagUpdate{Add: append(many(api.MaxTagsPerVM, "a"), many(api.MaxTagsPerVM, "a")...)}, ""},
		{"a vm over the limit may shed tags", many(api.MaxTagsPerVM+10, "a"), api.VMTagUpdate{Remove: []string{"a0"}}, ""},
		{"a tag at the length limit", nil, api.VMTagUpdate{Add: []string{long}}, ""},
		{"a tag past the length limit", nil, api.VMTagUpdate{Add: []string{long + "y"}}, "limit is 1024 bytes"},
		{"replace with a tag past the length limit", nil, api.VMTagUpdate{Replace: strs(long + "y")}, "limit is 1024 bytes"},
		{"an old long tag may stay", []string{long + "y"}, api.VMTagUpdate{Add: []string{"b"}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := applyTagUpdate(tc.current, tc.update)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("applyTagUpdate: %v", err)
				}
				return
			}
			if !errors.Is(err, api.ErrInvalid) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("applyTagUpdate = %v; want ErrInvalid naming %q", err, tc.wantErr)
			}
		})
	}
	if err := checkTags(many(api.MaxTagsPerVM+1, "a")); err == nil || !strings.Contains(err.Error(), "at most 256 tags") {
		t.Errorf("checkTags(257 tags) = %v, want the limit named", err)
	}
	if err := checkTags([]string{long + "y"}); err == nil || !strings.Contains(err.Error(), "limit is 1024 bytes") {
		t.Errorf("checkTags(a long tag) = %v, want the limit named", err)
	}
	if err := checkTags(many(api.MaxTagsPerVM, "a")); err != nil {
		t.Errorf("checkTags(256 tags) = %v", err)
	}
}
