package guest

import (
	"testing"

	"github.com/openslicer/openslicer/internal/secrets"
)

// FuzzSecretNamesAgree checks that the guest accepts exactly the secret
// names the host store accepts (the agent keeps its own copy of the rule,
// since it may not import the store), and that the permissions the host
// stores mean the same mode to the guest.
func FuzzSecretNamesAgree(f *testing.F) {
	for _, s := range []struct{ name, perms string }{
		{"db", "0640"}, {"a.b_c-d", "600"}, {".x", "0"}, {"..", "777"}, {"a/b", "0o600"},
		{"a\x00b", "1777"}, {"", ""}, {"é", "-1"}, {"x", "99999999999"},
	} {
		f.Add(s.name, s.perms)
	}
	f.Fuzz(func(t *testing.T, name, perms string) {
		host := secrets.ValidateName(name)
		guest := validateSecretName(name)
		if (host == nil) != (guest == nil) {
			t.Fatalf("secret name %q: the host says %v, the guest %v", name, host, guest)
		}
		m, err := secrets.ParsePermissions(perms)
		if err != nil {
			return
		}
		stored := secrets.FormatPermissions(m)
		gm, err := parseSecretMode(stored)
		if err != nil || gm != m {
			t.Fatalf("permissions %q are stored as %q, which the guest reads as %v, %v; want %v", perms, stored, gm, err, m)
		}
	})
}
