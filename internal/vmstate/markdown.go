package vmstate

import (
	"slices"
	"strings"
)

// Markdown renders Rules as the table docs/ARCHITECTURE.md shows (a test
// keeps the two the same). Consecutive rules that differ only in their op
// share a row.
func Markdown() string {
	var b strings.Builder
	b.WriteString("| operation | from | while it runs | to |\n|---|---|---|---|\n")
	for i := 0; i < len(Rules); {
		r, ops := Rules[i], []string{string(Rules[i].Op)}
		for i++; i < len(Rules) && sameEffect(Rules[i], r); i++ {
			ops = append(ops, string(Rules[i].Op))
		}
		from := make([]string, len(r.From))
		for j, s := range r.From {
			from[j] = string(s)
		}
		to := string(r.To)
		if to == "" {
			to = "(unchanged)"
		}
		b.WriteString("| " + strings.Join(ops, ", ") + " | " + strings.Join(from, ", ") + " | " + string(r.Via) + " | " + to + " |\n")
	}
	return b.String()
}

func sameEffect(a, b Rule) bool {
	return slices.Equal(a.From, b.From) && a.Via == b.Via && a.To == b.To
}
