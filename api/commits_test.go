package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// The fork body of Slicer's SDK test fixture (spec §3.14) decodes
// strictly, with every list's nil/empty meaning kept, and encodes back to
// the same keys.
func TestForkRequestFixture(t *testing.T) {
	const fixture = `{"network":{"allow":[]},"tags":["job=review"],"tag_mode":"replace","secrets":[],"persistent":false,"fixups":[],"vcpu":1,"ram_bytes":536870912}`
	dec := json.NewDecoder(strings.NewReader(fixture))
	dec.DisallowUnknownFields()
	var req ForkVMRequest
	if err := dec.Decode(&req); err != nil {
		t.Fatal(err)
	}
	switch {
	case req.Network == nil || req.Network.Allow == nil || len(*req.Network.Allow) != 0 || req.Network.Drop != nil:
		t.Errorf("network %+v: want allow [] and drop inherited", req.Network)
	case req.Secrets == nil || len(*req.Secrets) != 0:
		t.Errorf("secrets %v: want [] (none)", req.Secrets)
	case req.Fixups == nil || len(*req.Fixups) != 0:
		t.Errorf("fixups %v: want [] (none)", req.Fixups)
	case req.TagMode != TagModeReplace || req.VCPU != 1 || req.RamBytes != 512<<20 || len(req.Tags) != 1:
		t.Errorf("fork request %+v", req)
	}
	out, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	var a, b map[string]any
	json.Unmarshal([]byte(fixture), &a)
	json.Unmarshal(out, &b)
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	if !bytes.Equal(ja, jb) {
		t.Errorf("encoded %s, want the fixture's keys and values %s", jb, ja)
	}
	// A fork that sets nothing sends only persistent.
	if out, _ := json.Marshal(ForkVMRequest{}); string(out) != `{"persistent":false}` {
		t.Errorf("empty fork body %s", out)
	}
}

func TestCheckCommitID(t *testing.T) {
	for _, id := range []string{"cmt-demo", "cmt-0123456789abcdef", "a.b", "x"} {
		if err := CheckCommitID(id); err != nil {
			t.Errorf("CheckCommitID(%q) = %v", id, err)
		}
	}
	for _, id := range []string{"", "..", "a..b", "a/b", `a\b`, "a\x00b", strings.Repeat("x", MaxCommitIDBytes+1)} {
		if err := CheckCommitID(id); !errors.Is(err, ErrInvalid) {
			t.Errorf("CheckCommitID(%q) = %v, want ErrInvalid", id, err)
		}
	}
}
