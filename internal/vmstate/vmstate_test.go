package vmstate

import (
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/openslicer/openslicer/api"
)

// allowed is the state machine written out by hand, every op against
// every state: a letter is the state the op leaves the VM in (= unchanged),
// a dot a refusal. Columns: gone, creating, running, paused, suspended,
// stopped, pausing, resuming, suspending, committing, pooled.
var allowed = `
create       C . . . . . . . . . .
boot         . R . . . . . . . . .
pause        . . P . . . . . . . .
resume       . . . R . . . . . . .
suspend      . . U U . . . . . . .
restore      . . . . C . . . . . .
relaunch     . . . . . C . . . . .
exit         . . S S . . S S . . S
shutdown     . . = = . . . . . . .
delete       . G G G G G G G G . G
detach       . . G G . . . . . . .
exec         . = = . . . . . . . .
shell        . = = . . . . . . . .
forward      . = = . . . . . . . .
health       . = = . . . . . . . .
stats        . = = . . . . . . . .
guest        . = = . . . . . . . .
sync-secrets . . = . . . . . . . .
commit       . . . . . S . . . . .
capture      . . R . . . . . . . .
pool         . . O . . . . . . . .
take         . . . . . . . . . . R
`

var columns = []State{Gone, Creating, Running, Paused, Suspended, Stopped, Pausing, Resuming, Suspending, Committing, Pooled}

var letters = map[string]State{"O": Pooled, "C": Creating, "R": Running, "P": Paused, "U": Suspended, "S": Stopped, "G": Gone, "=": ""}

// TestEveryTransition checks every op in every state, allowed and refused,
// against the matrix above, and that the table has no op the matrix lacks.
func TestEveryTransition(t *testing.T) {
	seen := map[Op]bool{}
	for _, line := range strings.Split(strings.TrimSpace(allowed), "\n") {
		f := strings.Fields(line)
		op := Op(f[0])
		seen[op] = true
		if len(f)-1 != len(columns) {
			t.Fatalf("matrix row %q has %d cells", line, len(f)-1)
		}
		for i, cell := range f[1:] {
			from := columns[i]
			rule, err := Check("sbox-1", op, from)
			if cell == "." {
				var refused *Refused
				if !errors.As(err, &refused) || !errors.Is(err, api.ErrConflict) || refused.State != from || refused.Op != op {
					t.Errorf("%s in %s: got %v, want a refusal of class conflict", op, from, err)
				}
				continue
			}
			if err != nil {
				t.Errorf("%s in %s refused: %v", op, from, err)
				continue
			}
			if want := letters[cell]; rule.To != want {
				t.Errorf("%s from %s goes to %q, want %q", op, from, rule.To, want)
			}
		}
	}
	for _, r := range Rules {
		if !seen[r.Op] {
			t.Errorf("op %s is in the table but not in the test's matrix", r.Op)
		}
	}
}

// Ops that call the hypervisor go through a state that is never stored,
// and come back from it to where they began on failure: the Via state must
// be one no other op leaves a VM in, and only Exit and Delete may
// interrupt it.
func TestViaStates(t *testing.T) {
	via := map[Op]State{Pause: Pausing, Resume: Resuming, Suspend: Suspending, Commit: Committing, Capture: Committing}
	for _, r := range Rules {
		if want := via[r.Op]; r.Via != want {
			t.Errorf("%s runs through %q, want %q", r.Op, r.Via, want)
		}
		if r.To != "" && r.To != Gone && !r.To.Stored() {
			t.Errorf("%s leaves a vm in %s, which is never stored", r.Op, r.To)
		}
	}
	for _, s := range []State{Pausing, Resuming, Suspending, Committing} {
		if s.Stored() || s.Status() != "" {
			t.Errorf("%s is stored or shown", s)
		}
		if s == Committing {
			// A commit works on a stopped VM's disk: it has no machine to
			// exit, and a delete must wait for the layer to be made. A
			// capture is as short as a pause and must not be cut.
			for _, r := range Rules {
				if Allowed(r.Op, s) {
					t.Errorf("%s may run while a vm is %s", r.Op, s)
				}
			}
			continue
		}
		for _, r := range Rules {
			if Allowed(r.Op, s) && r.Op != Exit && r.Op != Delete {
				t.Errorf("%s may run while a vm is %s", r.Op, s)
			}
		}
	}
}

func TestLabelsAndStatus(t *testing.T) {
	for _, tc := range []struct {
		s             State
		label, status string
	}{
		{Creating, "Creating", api.StatusRunning},
		{Running, "Running", api.StatusRunning},
		{Paused, "Paused", api.StatusPaused},
		{Suspended, "Suspended", api.StatusPaused},
		{Stopped, "Stopped", api.StatusStopped},
		{Pausing, "Pausing", ""},
		{Gone, "Gone", ""},
		{"hibernated", "hibernated", ""}, // from a newer daemon: shown as it is
	} {
		if tc.s.Label() != tc.label || tc.s.Status() != tc.status {
			t.Errorf("%q: label %q status %q, want %q %q", tc.s, tc.s.Label(), tc.s.Status(), tc.label, tc.status)
		}
	}
	if len(All) != len(states) {
		t.Errorf("All lists %d states, the table describes %d", len(All), len(states))
	}
}

// The stored values are on disk and on the wire: they must not change.
func TestStoredValues(t *testing.T) {
	for s, want := range map[State]string{Creating: "creating", Running: "running", Paused: "paused", Suspended: "suspended", Stopped: "stopped"} {
		b, _ := json.Marshal(s)
		if string(b) != `"`+want+`"` || !s.Stored() {
			t.Errorf("%s encodes as %s (stored %v), want %q", s, b, s.Stored(), want)
		}
	}
}

func TestRefusedMessage(t *testing.T) {
	_, err := Check("sbox-1", Pause, Stopped)
	if got, want := err.Error(), `pause vm "sbox-1": it is Stopped: conflict`; got != want {
		t.Errorf("message %q, want %q", got, want)
	}
	_, err = Check("sbox-1", Exec, Suspending)
	if got, want := err.Error(), `exec in vm "sbox-1": it is Suspending: conflict`; got != want {
		t.Errorf("message %q, want %q", got, want)
	}
}

// TestArchitectureDocMatches keeps the table in docs/ARCHITECTURE.md the
// same as Rules.
func TestArchitectureDocMatches(t *testing.T) {
	doc, err := os.ReadFile("../../docs/ARCHITECTURE.md")
	if err != nil {
		t.Skipf("no docs: %v", err)
	}
	const begin, end = "<!-- vmstate.Markdown -->\n", "<!-- end vmstate.Markdown -->"
	text := string(doc)
	i, j := strings.Index(text, begin), strings.Index(text, end)
	if i < 0 || j < i {
		t.Fatalf("docs/ARCHITECTURE.md has no table between %q and %q", begin, end)
	}
	if got, want := text[i+len(begin):j], Markdown(); got != want {
		t.Errorf("the state table in docs/ARCHITECTURE.md differs from vmstate.Rules; it should read:\n%s", want)
	}
}
