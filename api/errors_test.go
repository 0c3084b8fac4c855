package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"testing"
)

// A boot failure is a 502 on the server, and the client's error for a 502
// unwraps to the same class.
func TestBootFailedStatus(t *testing.T) {
	err := fmt.Errorf("vm %q: %w: it printed nothing", "sb-1", ErrBootFailed)
	if got := StatusOf(err); got != http.StatusBadGateway {
		t.Errorf("StatusOf(boot failure) = %d, want 502", got)
	}
	back := &Error{Method: "POST", Path: "/hostgroup/sb/nodes", StatusCode: http.StatusBadGateway, Message: err.Error()}
	if !errors.Is(back, ErrBootFailed) {
		t.Errorf("client error for a 502 does not unwrap to ErrBootFailed")
	}
}

// Without the extension fields, GET /info is byte for byte Slicer's.
func TestInfoWireCompatible(t *testing.T) {
	b, err := json.Marshal(Info{Version: "0.1", GitCommit: "abc", Platform: "linux", Arch: "amd64"})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"version":"0.1","git_commit":"abc","platform":"linux","arch":"amd64"}`; string(b) != want {
		t.Errorf("Info = %s, want %s", b, want)
	}
}

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
