package cli

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// countSeen counts the requests the fake saw that equal req.
func countSeen(f *fakeAPI, req string) int {
	n := 0
	for _, s := range f.seen() {
		if s == req {
			n++
		}
	}
	return n
}

func TestReadyPollsUntilTheAgentAnswers(t *testing.T) {
	f, srv := newFakeAPI(t)
	f.notUp = 3
	code, out, errOut := runCLI(t, nil, "vm", "ready", "task-1", "--interval", "1ms", "--url", srv.URL)
	if code != 0 || out != "task-1: agent ready\n" {
		t.Fatalf("vm ready = %d, %q, stderr %q", code, out, errOut)
	}
	if n := countSeen(f, "GET /vm/task-1/health"); n != 4 {
		t.Errorf("%d health checks; want 3 not ready, then 1 ready", n)
	}
}

func TestReadyUserdataWaitsForUserdataRan(t *testing.T) {
	f, srv := newFakeAPI(t)
	f.notUp, f.userdataPending = 1, 2
	code, out, errOut := runCLI(t, nil, "vm", "ready", "task-1", "--userdata", "--interval", "1ms", "--url", srv.URL)
	if code != 0 || out != "task-1: userdata ran (exit code 0)\n" {
		t.Fatalf("vm ready --userdata = %d, %q, stderr %q", code, out, errOut)
	}
	if n := countSeen(f, "GET /vm/task-1/health"); n != 4 {
		t.Errorf("%d health checks; want 1 not up, 2 without userdata, 1 ready", n)
	}
}

func TestReadyFriendlyName(t *testing.T) {
	f, srv := newFakeAPI(t)
	f.notUp = 1
	code, out, errOut := runCLI(t, nil, "vm", "ready", "web", "--interval", "1ms", "--url", srv.URL)
	if code != 0 || out != "task-2: agent ready\n" {
		t.Fatalf("vm ready web = %d, %q, stderr %q", code, out, errOut)
	}
	want := []string{"GET /vm/web/health", "GET /nodes?tag=name%3Dweb", "GET /vm/task-2/health", "GET /vm/task-2/health"}
	if diff := cmp.Diff(want, f.seen()); diff != "" {
		t.Errorf("requests mismatch (-want +got):\n%s", diff)
	}
}

func TestReadyTimesOutWithTheReason(t *testing.T) {
	f, srv := newFakeAPI(t)
	f.notUp = 1 << 30
	code, out, errOut := runCLI(t, nil, "vm", "ready", "task-1", "--timeout", "500ms", "--interval", "5ms", "--url", srv.URL)
	if code != 1 || out != "" {
		t.Fatalf("vm ready on a VM that never comes up = %d, %q", code, out)
	}
	if !strings.Contains(errOut, "vm task-1: agent not ready within 500ms (last: ") || !strings.Contains(errOut, "agent not ready") {
		t.Errorf("stderr %q; want the timeout and the last answer", errOut)
	}
	code, _, errOut = runCLI(t, nil, "vm", "ready", "task-1", "--userdata", "--timeout", "500ms", "--interval", "5ms", "--url", srv.URL)
	if code != 1 || !strings.Contains(errOut, "userdata not ready within 500ms") {
		t.Errorf("--userdata timeout = %d, %q", code, errOut)
	}
}

// An unknown VM ends the wait at once: it will not appear by polling.
func TestReadyUnknownVMFailsAtOnce(t *testing.T) {
	f, srv := newFakeAPI(t)
	code, _, errOut := runCLI(t, nil, "vm", "ready", "nope", "--timeout", "1h", "--url", srv.URL)
	if code != 1 || !strings.Contains(errOut, "vm nope:") || !strings.Contains(strings.ToLower(errOut), "not found") {
		t.Errorf("vm ready nope = %d, %q; want 1 and not found", code, errOut)
	}
	if diff := cmp.Diff([]string{"GET /vm/nope/health", "GET /nodes?tag=name%3Dnope"}, f.seen()); diff != "" {
		t.Errorf("requests mismatch (-want +got):\n%s", diff)
	}
}

// A daemon that does not answer is "not ready yet", and the timeout says
// why.
func TestReadyDaemonDown(t *testing.T) {
	_, srv := newFakeAPI(t)
	srv.Close()
	code, _, errOut := runCLI(t, nil, "vm", "ready", "task-1", "--timeout", "500ms", "--interval", "5ms", "--url", srv.URL)
	if code != 1 || !strings.Contains(errOut, "agent not ready within 500ms (last: ") || !strings.Contains(errOut, "connection refused") {
		t.Errorf("vm ready with no daemon = %d, %q", code, errOut)
	}
}

func TestReadyFlags(t *testing.T) {
	for _, args := range [][]string{
		{"vm", "ready", "task-1", "--agent", "--userdata"},
		{"vm", "ready", "task-1", "--interval", "0s"},
		{"vm", "ready", "task-1", "--timeout", "-1s"},
		{"vm", "ready"},
	} {
		if code, _, errOut := runCLI(t, nil, args...); code != 1 || errOut == "" {
			t.Errorf("%v = %d, %q; want a usage error", args, code, errOut)
		}
	}
}
