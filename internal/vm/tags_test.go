package vm

import (
	"errors"
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
