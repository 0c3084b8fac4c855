package api

import (
	"encoding/json"
	"testing"
)

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
