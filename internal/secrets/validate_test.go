package secrets

import (
	"encoding/base64"
	"errors"
	"io/fs"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/openslicer/openslicer/api"
)

func TestValidateName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"db-password", true},
		{"A.b_c-9", true},
		{"x", true},
		{"a.meta.json", true},
		{strings.Repeat("a", MaxNameLen), true},
		{"", false},
		{strings.Repeat("a", MaxNameLen+1), false},
		{".hidden", false},
		{".", false},
		{"..", false},
		{".index.json", false},
		{".tmp-x", false},
		{"a/b", false},
		{"../etc", false},
		{"a b", false},
		{"a\x00b", false},
		{"naïve", false},
		{"a:b", false},
		{"a\\b", false},
	}
	for _, tt := range tests {
		err := ValidateName(tt.name)
		if tt.ok && err != nil {
			t.Errorf("ValidateName(%q) = %v, want nil", tt.name, err)
		}
		if !tt.ok && !errors.Is(err, api.ErrInvalid) {
			t.Errorf("ValidateName(%q) = %v, want api.ErrInvalid", tt.name, err)
		}
	}
}

func TestParsePermissions(t *testing.T) {
	tests := []struct {
		in   string
		want fs.FileMode
		ok   bool
	}{
		{"0600", 0o600, true},
		{"600", 0o600, true},
		{"0400", 0o400, true},
		{"0777", 0o777, true},
		{"0", 0, true},
		{"00640", 0o640, true},
		{"", 0, false},
		{"1777", 0, false}, // sticky bit: more than 0777
		{"4755", 0, false},
		{"0800", 0, false},
		{"0o600", 0, false},
		{"rw-------", 0, false},
		{"-600", 0, false},
		{" 0600", 0, false},
		{"99999999999999999999", 0, false},
	}
	for _, tt := range tests {
		got, err := ParsePermissions(tt.in)
		if tt.ok {
			if err != nil || got != tt.want {
				t.Errorf("ParsePermissions(%q) = %o, %v; want %o, nil", tt.in, got, err, tt.want)
			}
			continue
		}
		if !errors.Is(err, api.ErrInvalid) {
			t.Errorf("ParsePermissions(%q) = %o, %v; want api.ErrInvalid", tt.in, got, err)
		}
	}
}

func TestNormalPermissions(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", "0600"},
		{"600", "0600"},
		{"0644", "0644"},
		{"00400", "0400"},
		{"7", "0007"},
	}
	for _, tt := range tests {
		if got, err := normalPermissions(tt.in); err != nil || got != tt.want {
			t.Errorf("normalPermissions(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestDecodeData(t *testing.T) {
	tests := []struct {
		in   string
		want string
		ok   bool
	}{
		{base64.StdEncoding.EncodeToString([]byte("hunter2")), "hunter2", true},
		{base64.StdEncoding.EncodeToString([]byte{0, 0xff, '\n'}), "\x00\xff\n", true},
		{"", "", true},
		{"aGVsbG8=", "hello", true},
		{"aGVsbG8", "", false}, // missing padding
		{"hunter2", "", false},
		{"aGVs*G8=", "", false},
		{"aGVsbG8-", "", false}, // URL alphabet
	}
	for _, tt := range tests {
		got, err := decodeData(tt.in)
		if tt.ok {
			if err != nil || string(got) != tt.want {
				t.Errorf("decodeData(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
			continue
		}
		if !errors.Is(err, api.ErrInvalid) {
			t.Errorf("decodeData(%q) = %q, %v; want api.ErrInvalid", tt.in, got, err)
		}
	}
}

func TestPlanUpdate(t *testing.T) {
	then := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := then.Add(time.Hour)
	old := meta{Permissions: "0600", UID: 1, GID: 2, ModifiedAt: then}
	str := func(s string) *string { return &s }
	u32 := func(v uint32) *uint32 { return &v }
	b64 := func(s string) *string { return str(base64.StdEncoding.EncodeToString([]byte(s))) }

	tests := []struct {
		name     string
		req      api.UpdateSecretRequest
		want     meta
		wantData []byte
		changed  bool
		invalid  bool
	}{
		{name: "nothing", want: old},
		{name: "empty data and permissions mean unchanged",
			req:  api.UpdateSecretRequest{Data: str(""), Permissions: str("")},
			want: old},
		{name: "data only",
			req:      api.UpdateSecretRequest{Data: b64("new")},
			want:     meta{Permissions: "0600", UID: 1, GID: 2, ModifiedAt: now},
			wantData: []byte("new"), changed: true},
		{name: "permissions normalised",
			req:  api.UpdateSecretRequest{Permissions: str("400")},
			want: meta{Permissions: "0400", UID: 1, GID: 2, ModifiedAt: now}, changed: true},
		{name: "uid zero is provided, not omitted",
			req:  api.UpdateSecretRequest{UID: u32(0)},
			want: meta{Permissions: "0600", UID: 0, GID: 2, ModifiedAt: now}, changed: true},
		{name: "gid",
			req:  api.UpdateSecretRequest{GID: u32(1000)},
			want: meta{Permissions: "0600", UID: 1, GID: 1000, ModifiedAt: now}, changed: true},
		{name: "everything",
			req:      api.UpdateSecretRequest{Data: b64("x"), Permissions: str("0440"), UID: u32(5), GID: u32(6)},
			want:     meta{Permissions: "0440", UID: 5, GID: 6, ModifiedAt: now},
			wantData: []byte("x"), changed: true},
		{name: "bad base64", req: api.UpdateSecretRequest{Data: str("!!")}, invalid: true},
		{name: "bad permissions", req: api.UpdateSecretRequest{Permissions: str("0999")}, invalid: true},
		{name: "permissions over 0777", req: api.UpdateSecretRequest{Permissions: str("01000")}, invalid: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, data, changed, err := planUpdate(old, tt.req, now)
			if tt.invalid {
				if !errors.Is(err, api.ErrInvalid) {
					t.Fatalf("planUpdate() error = %v, want api.ErrInvalid", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("planUpdate() error = %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("planUpdate() meta (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantData, data); diff != "" {
				t.Errorf("planUpdate() data (-want +got):\n%s", diff)
			}
			if changed != tt.changed {
				t.Errorf("planUpdate() changed = %v, want %v", changed, tt.changed)
			}
		})
	}
}
