package config

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// FuzzParse feeds arbitrary bytes to the config loader as a file, then
// applies defaults and validates what it could decode, as LoadAndValidate
// does. Whatever the bytes:
//   - nothing panics;
//   - every problem is a *FieldError naming the file and a line or a
//     field (the one exception: a file with no document at all, which has
//     no line to name);
//   - a config that parses without problems is written back by Format to
//     text that parses to the same config (decode(encode(x)) == x; an
//     empty list and no list are the same).
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		seedYAML,
		"config:\n  host_groups:\n  - name: sbox\n    storage_size: 25Q\n  bogus: 1\n",
		"config:\n  host_groups: []\n  ssh_keys: []\n",
		"config:\n  host_groups:\n  - name: a\n    userdata: \"\\0\\x80 \\t\\n\"\n",
		"config:\n  api:\n    auth:\n      enabled: yes\n      token: \"\"\n",
		"config: &a\n  host_groups: *a\n",
		"a: &a [*a, *a]\nconfig: *a\n",
		"config:\n  host_groups:\n  - name: x\n    count: 99999999999999999999\n    ram_gb: -1\n",
		"config:\n  <<: {image: x}\n",
		"config:\n  image: a\n  image: b\n",
		"---\nconfig: {}\n---\nconfig: {}\n",
		"config:\n\t- tab\n",
		"\xff\xfe",
		"# only a comment\n",
		"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		const name = "fuzz.yaml"
		cfg, err := Parse(name, data)
		checkProblems(t, name, data, err)
		if cfg != nil && err == nil {
			checkFormatRoundTrip(t, cfg)
		}
		// LoadAndValidate validates whatever could be decoded.
		part, _ := parse(name, data)
		if part == nil {
			return
		}
		ApplyDefaults(part, "qemu")
		checkProblems(t, name, data, Validate(part, ValidateOptions{BaseDir: t.TempDir()}))
	})
}

// checkProblems checks that err is nil or joins only FieldErrors that
// name the file and a line or a field.
func checkProblems(t *testing.T, name string, data []byte, err error) {
	t.Helper()
	for _, e := range leaves(err) {
		var fe *FieldError
		switch {
		case !errors.As(e, &fe):
			t.Fatalf("%q: problem %v (%T) is not a *FieldError", data, e, e)
		case fe.File != name:
			t.Fatalf("%q: problem %q names file %q, want %q", data, e, fe.File, name)
		case fe.Line < 0:
			t.Fatalf("%q: problem %q names line %d", data, e, fe.Line)
		case fe.Line == 0 && fe.Field == "" && !strings.HasPrefix(fe.Msg, "the file is empty"):
			t.Fatalf("%q: problem %q names neither a line nor a field", data, e)
		case fe.Msg == "":
			t.Fatalf("%q: problem %q says nothing", data, e)
		}
	}
}

// leaves returns the errors joined in err, recursively.
func leaves(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, leaves(e)...)
		}
		return out
	}
	return []error{err}
}

// checkFormatRoundTrip checks that Format writes cfg as text that parses
// back to cfg.
func checkFormatRoundTrip(t *testing.T, cfg *Config) {
	t.Helper()
	text := Format(cfg)
	again, err := Parse("formatted.yaml", []byte(text))
	if err != nil {
		t.Fatalf("Format wrote text that does not parse: %v\n%s", err, text)
	}
	if diff := cmp.Diff(cfg, again, cmpopts.IgnoreFields(Config{}, "Source"), cmpopts.EquateEmpty()); diff != "" {
		t.Fatalf("Parse(Format(cfg)) != cfg (-cfg +again):\n%s\n%s", diff, text)
	}
}

// FuzzParseSize feeds arbitrary sizes to ParseSize: a size it accepts is
// not negative, and FormatSize writes every size so that ParseSize reads
// it back.
func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"25G", "25GB", "25Gi", "512M", "1T", "0", " 7 k ", "9223372036854775807", "8E", "-1G", "1.5G", "G", "99999999999T"} {
		f.Add(s, int64(0))
	}
	f.Add("", int64(math.MaxInt64))
	f.Add("", int64(1<<40))
	f.Fuzz(func(t *testing.T, s string, n int64) {
		if v, err := ParseSize(s); err == nil {
			if v < 0 {
				t.Fatalf("ParseSize(%q) = %d", s, v)
			}
			if back, err := ParseSize(FormatSize(v)); err != nil || back != v {
				t.Fatalf("ParseSize(FormatSize(%d)) = %d, %v (from %q, formatted %q)", v, back, err, s, FormatSize(v))
			}
		} else if !strings.Contains(err.Error(), "size") && !strings.Contains(err.Error(), "too large") {
			t.Fatalf("ParseSize(%q): error %q does not say what is wrong", s, err)
		}
		if n < 0 {
			return
		}
		if back, err := ParseSize(FormatSize(n)); err != nil || back != n {
			t.Fatalf("ParseSize(FormatSize(%d)) = %d, %v (formatted %q)", n, back, err, FormatSize(n))
		}
	})
}
