package qemu

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/hypervisor"
)

func TestSaveDone(t *testing.T) {
	tests := []struct {
		st      migrationStatus
		done    bool
		wantErr string // substring; empty: no error
	}{
		{migrationStatus{}, false, ""}, // {} before the migration exists
		{migrationStatus{Status: "setup"}, false, ""},
		{migrationStatus{Status: "active"}, false, ""},
		{migrationStatus{Status: "device"}, false, ""},
		{migrationStatus{Status: "completed"}, true, ""},
		{migrationStatus{Status: "failed", ErrorDesc: "Unable to write to file: No space left on device"}, false, "save failed: Unable to write to file: No space left on device"},
		{migrationStatus{Status: "failed"}, false, "save failed"},
		{migrationStatus{Status: "cancelled"}, false, "cancelled"},
	}
	for _, tt := range tests {
		done, err := saveDone(tt.st)
		if done != tt.done {
			t.Errorf("saveDone(%+v) done = %v, want %v", tt.st, done, tt.done)
		}
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("saveDone(%+v) error = %v, want none", tt.st, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("saveDone(%+v) error = %v, want one containing %q", tt.st, err, tt.wantErr)
		}
	}
}

func TestMigrating(t *testing.T) {
	for status, want := range map[string]bool{
		"": false, "none": false, "completed": false, "failed": false, "cancelled": false,
		"setup": true, "active": true, "device": true, "cancelling": true, "pre-switchover": true,
	} {
		if got := migrating(status); got != want {
			t.Errorf("migrating(%q) = %v, want %v", status, got, want)
		}
	}
}

func TestCanSuspend(t *testing.T) {
	for _, s := range []string{"running", "paused"} {
		if err := canSuspend(s); err != nil {
			t.Errorf("canSuspend(%q) = %v, want nil", s, err)
		}
	}
	for _, s := range []string{"inmigrate", "postmigrate", "shutdown", "guest-panicked", "internal-error"} {
		if err := canSuspend(s); !errors.Is(err, api.ErrConflict) {
			t.Errorf("canSuspend(%q) = %v, want api.ErrConflict", s, err)
		}
	}
}

func TestRestoreStep(t *testing.T) {
	tests := []struct {
		status string
		want   restoreAction
		err    bool
	}{
		{"inmigrate", restoreWait, false},
		{"paused", restoreResume, false}, // the save stopped the vCPUs
		{"running", restoreDone, false},
		{"shutdown", 0, true},
		{"internal-error", 0, true},
		{"guest-panicked", 0, true},
	}
	for _, tt := range tests {
		got, err := restoreStep(tt.status)
		if (err != nil) != tt.err || (err == nil && got != tt.want) {
			t.Errorf("restoreStep(%q) = %v, %v; want %v, error %v", tt.status, got, err, tt.want, tt.err)
		}
	}
}

func TestAgentPortOpen(t *testing.T) {
	tests := []struct {
		name   string
		answer string
		want   bool
		err    bool
	}{{
		name: "guest has the port open",
		answer: `[{"frontend-open": true, "filename": "file", "label": "con0"},
			{"frontend-open": true, "filename": "unix:/run/x/agent.sock,server=on", "label": "agent"}]`,
		want: true,
	}, {
		name:   "guest has not opened it",
		answer: `[{"frontend-open": false, "filename": "disconnected:unix:/run/x/agent.sock,server=on", "label": "agent"}]`,
		want:   false,
	}, {
		name:   "no agent chardev",
		answer: `[{"frontend-open": true, "filename": "file", "label": "con0"}]`,
		err:    true,
	}, {
		name:   "not a list",
		answer: `{}`,
		err:    true,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := agentPortOpen([]byte(tt.answer))
			if (err != nil) != tt.err || got != tt.want {
				t.Errorf("agentPortOpen = %v, %v; want %v, error %v", got, err, tt.want, tt.err)
			}
		})
	}
}

// TestStartMissingState: a restore from a state directory that is not
// there is api.ErrNotFound, and starts nothing.
func TestStartMissingState(t *testing.T) {
	spec := baseSpec()
	spec.RunDir = filepath.Join(t.TempDir(), "run")
	spec.RestoreFrom = filepath.Join(t.TempDir(), "missing.state")
	_, err := New(nil).Start(context.Background(), spec)
	if !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("Start from a missing state error = %v, want api.ErrNotFound", err)
	}
	if _, err := os.Stat(spec.RunDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("run dir created for a restore that could not start (stat error %v)", err)
	}
}

// TestStartStateRefused: a state directory whose manifest does not
// match the machine, or that has none, is refused before QEMU runs.
func TestStartStateRefused(t *testing.T) {
	spec := baseSpec()
	spec.RunDir = filepath.Join(t.TempDir(), "run")
	accel := Accel{} // tcg
	b := New(nil)
	b.decision = &AccelDecision{Accel: accel}

	saved := filepath.Join(t.TempDir(), "vm.state")
	w, err := hypervisor.CreateState(saved)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, w.Path(migrationFile), "stream")
	shape := hypervisor.ShapeOf(spec, "kvm")
	err = w.Commit(hypervisor.Manifest{Backend: "qemu", Format: stateFormat, Machine: shape,
		Files: []hypervisor.StateFile{{Name: migrationFile, Holds: []string{hypervisor.HoldsMemory, hypervisor.HoldsDevices}}}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, from string
		class      error
		says       string
	}{
		{"saved under kvm", saved, api.ErrConflict, "accelerator: saved kvm, asked tcg"},
		{"no manifest", t.TempDir(), api.ErrInvalid, "not a state directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := spec
			spec.RestoreFrom = tt.from
			_, err := b.Start(context.Background(), spec)
			if !errors.Is(err, tt.class) || !strings.Contains(err.Error(), tt.says) {
				t.Fatalf("Start error = %v, want %v saying %q", err, tt.class, tt.says)
			}
			if _, err := os.Stat(spec.RunDir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("run dir created for a refused restore (stat error %v)", err)
			}
		})
	}
}
