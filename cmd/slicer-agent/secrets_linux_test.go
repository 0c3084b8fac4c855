package main

import (
	"strings"
	"testing"
)

func TestPrintSynced(t *testing.T) {
	for _, tc := range []struct {
		names []string
		want  string
	}{
		{nil, "synced 0 secrets\n"},
		{[]string{"db"}, "synced 1 secret: db\n"},
		{[]string{"a", "b", "c"}, "synced 3 secrets: a, b, c\n"},
	} {
		var b strings.Builder
		printSynced(&b, tc.names)
		if b.String() != tc.want {
			t.Errorf("printSynced(%q) = %q, want %q", tc.names, b.String(), tc.want)
		}
	}
}
