package api

import (
	"errors"
	"fmt"
	"testing"
)

// TestClassesRoundTrip: every error class becomes its status on the server
// (StatusOf) and comes back as the same class in the client (Error).
func TestClassesRoundTrip(t *testing.T) {
	for _, c := range classes {
		status := StatusOf(fmt.Errorf("something: %w", c.err))
		if status != c.status {
			t.Errorf("StatusOf(%v) = %d, want %d", c.err, status, c.status)
		}
		if err := error(&Error{StatusCode: status}); !errors.Is(err, c.err) {
			t.Errorf("a %d answer does not unwrap to %v", status, c.err)
		}
	}
	if got := StatusOf(errors.New("no class")); got != 500 {
		t.Errorf("StatusOf(no class) = %d, want 500", got)
	}
}
