package vm

import (
	"context"
	"errors"
	"maps"
	"os"
	"testing"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/config"
	"github.com/openslicer/openslicer/internal/hypervisor/hypervisortest"
	"github.com/openslicer/openslicer/internal/store"
	"github.com/openslicer/openslicer/internal/vmstate"
)

// A create with an Answer is recorded unanswered until its commit; an
// Answer that fails before commit unwinds the create.
func TestCreateRecordsAnswer(t *testing.T) {
	e := newEnv(t, &hypervisortest.Fake{})
	ctx := context.Background()
	var before, after bool
	resp, err := e.m.Create(ctx, "sbox", api.CreateNodeRequest{Persistent: true}, CreateOptions{
		Answer: func(resp api.CreateNodeResponse, commit func() error) error {
			before = e.record(t, resp.Hostname).Unanswered
			if err := commit(); err != nil {
				return err
			}
			after = e.record(t, resp.Hostname).Unanswered
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !before || after {
		t.Errorf("unanswered before commit %v, after %v; want true, false", before, after)
	}
	if _, err := e.m.Delete(ctx, "sbox", resp.Hostname); err != nil {
		t.Fatal(err)
	}

	gone := errors.New("client gone")
	_, err = e.m.Create(ctx, "sbox", api.CreateNodeRequest{Persistent: true}, CreateOptions{
		Answer: func(api.CreateNodeResponse, func() error) error { return gone },
	})
	if !errors.Is(err, gone) {
		t.Fatalf("Create whose answer failed = %v, want the answer's error", err)
	}
	e.assertEmpty(t)

	// Without Answer (count VMs, Go callers) a VM is answered from the start.
	resp, err = e.m.Create(ctx, "sbox", api.CreateNodeRequest{}, CreateOptions{})
	if err != nil || e.record(t, resp.Hostname).Unanswered {
		t.Fatalf("Create without Answer: %v, unanswered %v", err, e.record(t, resp.Hostname).Unanswered)
	}
}

// The daemon dies while creates are being answered: the next daemon keeps
// the persistent VM whose answer was recorded and reclaims the one whose
// was not, machine, disk and record.
func TestRecoverReclaimsUnansweredCreate(t *testing.T) {
	e := newEnv(t, &hypervisortest.Fake{})
	zero := 0
	e.m.opt.Config.HostGroups[0].Count = &zero
	ctx := context.Background()
	answered := mustCreateAnswered(t, e.m)

	// A create whose daemon dies before it answers: Answer never returns
	// while the next daemon recovers.
	dead, resume := make(chan string), make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		_, err := e.m.Create(ctx, "sbox", api.CreateNodeRequest{Persistent: true}, CreateOptions{
			Wait: WaitNone,
			Answer: func(resp api.CreateNodeResponse, commit func() error) error {
				dead <- resp.Hostname
				<-resume
				return errors.New("the daemon was dead")
			},
		})
		errc <- err
	}()
	unanswered := <-dead
	defer func() { close(resume); <-errc }()

	m2 := e.next(t)
	if got := statuses(t, m2); !maps.Equal(got, map[string]string{answered: "Running/running"}) {
		t.Fatalf("after restart: %v; want only %s, whose create was answered", got, answered)
	}
	if m := e.fake.Last(unanswered); m.Ended() != "kill" {
		t.Errorf("machine of the unanswered vm ended by %q, want kill", m.Ended())
	}
	if e.hasDisk(unanswered) {
		t.Error("disk of the unanswered vm kept")
	}
	if _, err := e.store.Get(unanswered); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("record of the unanswered vm: %v, want not found", err)
	}
}

func mustCreateAnswered(t *testing.T, m *Manager) string {
	t.Helper()
	resp, err := m.Create(context.Background(), "sbox", api.CreateNodeRequest{Persistent: true}, CreateOptions{
		Answer: func(_ api.CreateNodeResponse, commit func() error) error { return commit() },
	})
	if err != nil {
		t.Fatal(err)
	}
	return resp.Hostname
}

// A create cut short by a crash may have left its disk and plan half
// written, under temporary names: the next daemon removes them too.
func TestRecoverRemovesHalfWrittenFiles(t *testing.T) {
	e := newEnv(t, &hypervisortest.Fake{})
	zero := 0
	e.m.opt.Config.HostGroups[0].Count = &zero
	rec, err := e.store.Allocate("sbox", config.HostGroup{Name: "sbox"}.Hostname, func(index int, host string) store.VM {
		return store.VM{Hostname: host, Group: "sbox", Index: index, State: vmstate.Creating, Persistent: true,
			Disk: e.m.diskPath(host), RunDir: e.m.runDir(host)}
	})
	if err != nil {
		t.Fatal(err)
	}
	half := []string{rec.Disk + ".tmp", e.m.planPath(rec.Hostname) + ".tmp"}
	for _, f := range half {
		if err := os.WriteFile(f, []byte("half"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	e.next(t)
	for _, f := range half {
		if _, err := os.Stat(f); !os.IsNotExist(err) {
			t.Errorf("%s kept after recovery: %v", f, err)
		}
	}
	if _, err := e.store.Get(rec.Hostname); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("record of the half-created vm: %v", err)
	}
}
