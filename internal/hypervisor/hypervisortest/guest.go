package hypervisortest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/openslicer/openslicer/internal/hypervisor"
)

// Guest is the software the machines of the suite run: it supplies the
// boot files of a machine and speaks to its agent. A backend's conformance
// test passes the guest its machines can boot (the min image and its
// agent for a real backend; FakeGuest for Fake).
type Guest interface {
	// Spec returns the spec of a new machine running this guest: its
	// own run dir, console log and disks, under t's temporary
	// directories.
	Spec(t *testing.T) hypervisor.Spec
	// Connect waits, until ctx ends, for the agent of m to answer on a
	// connection from m.DialAgent, and returns a session with it.
	Connect(ctx context.Context, m hypervisor.Machine) (GuestSession, error)
	// HonoursPowerButton reports whether the guest powers off when
	// Machine.Shutdown presses the power button.
	HonoursPowerButton() bool
}

// GuestSession is a connection to a guest agent.
type GuestSession interface {
	// Put keeps value under key in the guest's memory (not on its disk):
	// a suspend and restore keeps it, a reboot loses it. Keys and values
	// are short words of letters and digits.
	Put(ctx context.Context, key, value string) error
	// Get returns the value kept under key.
	Get(ctx context.Context, key string) (string, error)
	// PowerOff asks the guest to power off; it returns once asked.
	PowerOff(ctx context.Context) error
	Close() error
}

// KVGuest is a minimal guest agent for fake machines (Fake.Guest). Each
// request and answer is one line: "ping" → "pong"; "put KEY VALUE" → "ok",
// keeping VALUE in the machine's memory; "get KEY" → "value VALUE" or
// "none"; "poweroff" → "ok", after which the machine ends as a guest
// power-off ends it. It serves conn until it closes.
func KVGuest(m *Machine, conn net.Conn) {
	defer conn.Close()
	r := bufio.NewReader(conn)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		answer, after := kvAnswer(m, strings.Fields(line))
		if _, err := fmt.Fprintln(conn, answer); err != nil {
			return
		}
		if after != nil {
			after()
		}
	}
}

// kvAnswer answers one KVGuest request, and returns what to do once the
// answer is sent.
func kvAnswer(m *Machine, req []string) (string, func()) {
	switch {
	case len(req) == 1 && req[0] == "ping":
		return "pong", nil
	case len(req) == 3 && req[0] == "put":
		m.Store(req[1], req[2])
		return "ok", nil
	case len(req) == 2 && req[0] == "get":
		if v, ok := m.Load(req[1]); ok {
			return "value " + v, nil
		}
		return "none", nil
	case len(req) == 1 && req[0] == "poweroff":
		return "ok", m.Exit
	}
	return "error unknown request", nil
}

// FakeGuest is the Guest of fake machines whose Fake.Guest is KVGuest.
type FakeGuest struct{}

// Spec implements Guest. The kernel and initrd need not exist.
func (FakeGuest) Spec(t *testing.T) hypervisor.Spec {
	dir := t.TempDir()
	return hypervisor.Spec{
		ID: dir, Name: "conformance", VCPUs: 1, MemoryBytes: 256 << 20,
		Kernel: "/fake/vmlinuz", Initrd: "/fake/initrd", Cmdline: "slicer.hostname=conformance",
		Disks:  []hypervisor.Disk{{Path: filepath.Join(dir, "disk.img")}},
		RunDir: filepath.Join(dir, "run"), ConsoleLog: filepath.Join(dir, "console.txt"),
	}
}

// HonoursPowerButton implements Guest: a fake machine powers off on
// Shutdown unless its Fake says IgnoreShutdown.
func (FakeGuest) HonoursPowerButton() bool { return true }

// Connect implements Guest.
func (FakeGuest) Connect(ctx context.Context, m hypervisor.Machine) (GuestSession, error) {
	conn, err := m.DialAgent(ctx)
	if err != nil {
		return nil, err
	}
	s := &kvSession{conn: conn, r: bufio.NewReader(conn)}
	if _, err := s.call(ctx, "ping"); err != nil {
		conn.Close()
		return nil, err
	}
	return s, nil
}

// kvSession speaks KVGuest's protocol, one request at a time.
type kvSession struct {
	mu   sync.Mutex
	conn net.Conn
	r    *bufio.Reader
}

func (s *kvSession) call(ctx context.Context, req string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	stop := context.AfterFunc(ctx, func() { s.conn.Close() })
	defer stop()
	if _, err := fmt.Fprintln(s.conn, req); err != nil {
		return "", errors.Join(err, ctx.Err())
	}
	line, err := s.r.ReadString('\n')
	if err != nil {
		return "", errors.Join(err, ctx.Err())
	}
	line = strings.TrimSuffix(line, "\n")
	if rest, ok := strings.CutPrefix(line, "error "); ok {
		return "", fmt.Errorf("guest: %s", rest)
	}
	return line, nil
}

func (s *kvSession) Put(ctx context.Context, key, value string) error {
	_, err := s.call(ctx, "put "+key+" "+value)
	return err
}

func (s *kvSession) Get(ctx context.Context, key string) (string, error) {
	answer, err := s.call(ctx, "get "+key)
	if err != nil {
		return "", err
	}
	if v, ok := strings.CutPrefix(answer, "value "); ok {
		return v, nil
	}
	return "", fmt.Errorf("guest keeps nothing under %q", key)
}

func (s *kvSession) PowerOff(ctx context.Context) error {
	_, err := s.call(ctx, "poweroff")
	return err
}

func (s *kvSession) Close() error { return s.conn.Close() }
