package guest

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openslicer/openslicer/api"
)

func TestParseMarker(t *testing.T) {
	tests := []struct {
		data string
		want *int
	}{
		{"", nil},         // legacy marker
		{"\n", nil},       // legacy marker with a newline
		{"0\n", ptr(0)},   // what formatMarker writes
		{"137", ptr(137)}, // no newline
		{" 2 \n", ptr(2)}, // white space around
		{"done\n", nil},   // not a number
		{"-1\n", ptr(-1)}, // a number is taken as it is
		{"1\n2\n", nil},   // two lines are not one number
		{string(formatMarker(42)), ptr(42)},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, parseMarker([]byte(tt.data))); diff != "" {
			t.Errorf("parseMarker(%q) (-want +got):\n%s", tt.data, diff)
		}
	}
}

func TestHasUserdata(t *testing.T) {
	for script, want := range map[string]bool{
		"":            false,
		" \n\t\n":     false,
		"echo hi":     true,
		"#!/bin/sh\n": true,
	} {
		if got := hasUserdata(script); got != want {
			t.Errorf("hasUserdata(%q) = %v, want %v", script, got, want)
		}
	}
}

func TestUserdataArgv(t *testing.T) {
	tests := []struct {
		script string
		want   []string
	}{
		{"echo hi\n", []string{"/bin/sh", "/etc/slicer/userdata"}},
		{"#!/bin/bash\necho hi\n", []string{"/etc/slicer/userdata"}},
		{"#!/usr/bin/env python3\nprint(1)\n", []string{"/etc/slicer/userdata"}},
		{" #!/bin/bash\n", []string{"/bin/sh", "/etc/slicer/userdata"}}, // not at the start
		{"# a comment\n", []string{"/bin/sh", "/etc/slicer/userdata"}},
	}
	for _, tt := range tests {
		got := userdataArgv(tt.script, "/etc/slicer/userdata", "/bin/sh")
		if diff := cmp.Diff(tt.want, got, ignoreShell); diff != "" {
			t.Errorf("userdataArgv(%q) (-want +got):\n%s", tt.script, diff)
		}
	}
}

func TestUserdataEnv(t *testing.T) {
	want := []string{"PATH=" + defaultPath, "HOME=/root", "TARGET_USER=slicer"}
	if diff := cmp.Diff(want, userdataEnv("slicer", "/root")); diff != "" {
		t.Errorf("userdataEnv (-want +got):\n%s", diff)
	}
}

func TestFirstBootUser(t *testing.T) {
	accounts := parsePasswd([]byte(testPasswd))
	tests := []struct {
		name     string
		user     string
		accounts []account
		want     account
		wantErr  error
	}{
		{"uid 1000 by default", "", accounts, account{Name: "slicer", UID: 1000, GID: 1000, Home: "/home/slicer"}, nil},
		{"named", "other", accounts, account{Name: "other", UID: 1001, GID: 1002, Home: "/home/other"}, nil},
		{"root named", "root", accounts, account{Name: "root", Home: "/root"}, nil},
		{"no uid 1000: root", "", accounts[:2], account{Name: "root", Home: "/root"}, nil},
		{"no passwd: root", "", nil, account{Name: "root", Home: "/root"}, nil},
		{"unknown", "ubuntu", accounts, account{}, api.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := firstBootUser(tt.user, defaultAccount("", tt.accounts, nil), tt.accounts)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("firstBootUser(%q) error = %v, want %v", tt.user, err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got, ignoreShell); diff != "" {
				t.Errorf("firstBootUser(%q) (-want +got):\n%s", tt.user, diff)
			}
		})
	}
}

func TestMergeAuthorizedKeys(t *testing.T) {
	const a, b, c = "ssh-ed25519 AAAA a@host", "ssh-rsa BBBB b@host", "ssh-ed25519 CCCC c@host"
	tests := []struct {
		name      string
		existing  string
		keys      []string
		want      string
		wantAdded int
	}{
		{"into nothing", "", []string{a, b}, a + "\n" + b + "\n", 2},
		{"appended", a + "\n", []string{b}, a + "\n" + b + "\n", 1},
		{"duplicate skipped", a + "\n" + b + "\n", []string{b, a}, a + "\n" + b + "\n", 0},
		{"duplicate with other white space", "  " + a + "\t\n", []string{a + "\n"}, "  " + a + "\t\n", 0},
		{"repeats among keys", "", []string{a, a}, a + "\n", 1},
		{"no final newline kept apart", a, []string{b}, a + "\n" + b + "\n", 1},
		{"several lines in one entry", "", []string{a + "\n\n" + b + "\n"}, a + "\n" + b + "\n", 2},
		{"blank keys", "# mine\n", []string{"", "  \n"}, "# mine\n", 0},
		{"comments and options kept", "# mine\n" + `from="10.0.0.1" ` + a + "\n", []string{a, c}, "# mine\n" + `from="10.0.0.1" ` + a + "\n" + a + "\n" + c + "\n", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, added := mergeAuthorizedKeys([]byte(tt.existing), tt.keys)
			if diff := cmp.Diff(tt.want, string(got)); diff != "" {
				t.Errorf("content (-want +got):\n%s", diff)
			}
			if added != tt.wantAdded {
				t.Errorf("added = %d, want %d", added, tt.wantAdded)
			}
		})
	}
}

func TestLineWriter(t *testing.T) {
	long := strings.Repeat("x", maxConsoleLine+10)
	tests := []struct {
		name   string
		writes []string
		want   []string // each Write to the console
	}{
		{"whole lines", []string{"a\nb\n"}, []string{"> a\n", "> b\n"}},
		{"line across writes", []string{"he", "llo\nwor", "ld\n"}, []string{"> hello\n", "> world\n"}},
		{"last line flushed", []string{"a\nno newline"}, []string{"> a\n", "> no newline\n"}},
		{"empty line", []string{"\n"}, []string{"> \n"}},
		{"longest line whole", []string{long[:maxConsoleLine] + "\nz\n"}, []string{"> " + long[:maxConsoleLine] + "\n", "> z\n"}},
		{"long line in pieces", []string{long + "\n"}, []string{"> " + long[:maxConsoleLine] + "\n", "> " + long[maxConsoleLine:] + "\n"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rec writeRecorder
			lw := &lineWriter{w: &rec, prefix: "> "}
			for _, w := range tt.writes {
				if n, err := lw.Write([]byte(w)); n != len(w) || err != nil {
					t.Fatalf("Write(%q) = %d, %v", w, n, err)
				}
			}
			lw.Flush()
			if diff := cmp.Diff(tt.want, rec.writes); diff != "" {
				t.Errorf("console writes (-want +got):\n%s", diff)
			}
		})
	}
}

// writeRecorder records each Write separately.
type writeRecorder struct{ writes []string }

func (r *writeRecorder) Write(p []byte) (int, error) {
	r.writes = append(r.writes, string(bytes.Clone(p)))
	return len(p), nil
}
