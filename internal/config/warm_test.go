package config

import (
	"strings"
	"testing"
)

func TestValidateWarm(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want string // a problem's text; "" for a valid config
	}{
		{"warm pool is valid", groupDoc("warm: 3"), ""},
		{"zero is valid", groupDoc("warm: 0"), ""},
		{"negative", groupDoc("warm: -1"), "warm: must be 0 or more, got -1"},
		{"devmapper cannot be pooled", groupDoc("warm: 1", "storage: devmapper"), "warm pools need storage: image"},
		{"fits the fixed addresses", groupDoc("count: 1", "warm: 1", "network:", "  gateway: 10.1.0.1/24", `  addresses: ["10.1.0.5", "10.1.0.6"]`), ""},
		{"more than the fixed addresses", groupDoc("count: 1", "warm: 2", "network:", "  gateway: 10.1.0.1/24", `  addresses: ["10.1.0.5", "10.1.0.6"]`),
			"count 1 and warm 2 need 3 addresses, but the group's network has 2"},
		{"more than the range", groupDoc("count: 2", "warm: 2", "network:", "  gateway: 10.1.0.1/24", "  range: 10.1.0.10-10.1.0.12"),
			"count 2 and warm 2 need 4 addresses, but the group's network has 3"},
		{"isolated names too long", "config:\n  host_groups:\n  - name: abcdefghij\n    warm: 1\n    network:\n      mode: isolated\n  hypervisor: qemu\n",
			"too long for a warm pool in isolated mode"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := strings.Join(validateText(t, tc.doc, ValidateOptions{}), "\n")
			if tc.want == "" && got != "" {
				t.Fatalf("unexpected problems:\n%s", got)
			}
			if !strings.Contains(got, tc.want) {
				t.Fatalf("problems lack %q:\n%s", tc.want, got)
			}
		})
	}
}

func TestMemoryBudget(t *testing.T) {
	if got := strings.Join(validateText(t, groupDoc()+"  memory_budget: 12G\n", ValidateOptions{}), "\n"); got != "" {
		t.Fatalf("memory_budget 12G: %s", got)
	}
	got := strings.Join(validateText(t, groupDoc()+"  memory_budget: lots\n", ValidateOptions{}), "\n")
	if !strings.Contains(got, "config.memory_budget") {
		t.Fatalf("memory_budget lots accepted: %q", got)
	}
	cfg := Config{MemoryBudget: "2G"}
	if cfg.MemoryBudgetBytes() != 2<<30 {
		t.Fatalf("MemoryBudgetBytes = %d", cfg.MemoryBudgetBytes())
	}
}
