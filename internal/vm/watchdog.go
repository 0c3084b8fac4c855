package vm

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/config"
)

// Default bounds of the boot watchdog: how long a booting guest may print
// nothing on its console. A guest of the min image prints its first line
// about 0.2 s (KVM) or 2 s (TCG) after its machine starts; the bounds
// leave room for a loaded host.
const (
	DefaultBootWatchdogKVM = 20 * time.Second
	DefaultBootWatchdogTCG = 90 * time.Second
)

// watchdogTick is how often the watchdog looks at the console log's size.
const watchdogTick = 200 * time.Millisecond

// consoleTailLines and consoleTailBytes bound the console lines quoted in
// a boot failure: enough for a kernel panic with its call trace.
const (
	consoleTailLines = 20
	consoleTailBytes = 4096
)

// BootWatchdogFor is the boot watchdog's bound: config boot_watchdog when
// set, else the default for the accelerator.
func BootWatchdogFor(cfg *config.Config, kvm bool) time.Duration {
	if d := cfg.BootWatchdogBound(); d > 0 {
		return d
	}
	if kvm {
		return DefaultBootWatchdogKVM
	}
	return DefaultBootWatchdogTCG
}

// bootWatch is what the watchdog of one machine start watches, while a
// create, relaunch or restore waits for the guest's agent.
type bootWatch struct {
	hostname string
	// console is the console log and offset its size before the machine
	// started: the log is appended to, so this boot's output is what
	// lies past offset.
	console string
	offset  int64
	// restore is set for a restored machine, which prints nothing new:
	// the bound is then on the agent answering at all.
	restore bool
	// exited is closed when the machine's process exits.
	exited <-chan struct{}
	accel  string
	// bound is the watchdog's bound; zero watches only for an exit.
	bound time.Duration
}

// run watches until ctx ends (the agent answered, or the wait gave up),
// and returns nil then. It returns an error of class api.ErrBootFailed,
// with the console's last lines, when the machine exits first, or when
// the bound passes before the guest prints anything (before the agent
// answers, for a restore).
func (w bootWatch) run(ctx context.Context) error {
	tick := time.NewTicker(watchdogTick)
	defer tick.Stop()
	var deadline <-chan time.Time
	if w.bound > 0 {
		t := time.NewTimer(w.bound)
		defer t.Stop()
		deadline = t.C
	}
	printed := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-w.exited:
			return w.failure("its machine exited before the agent was ready", false)
		case <-deadline:
			if w.restore {
				return w.failure(fmt.Sprintf("its agent did not answer within %s of the restore", w.bound), true)
			}
			if !printed && !w.printed() {
				return w.failure(fmt.Sprintf("it printed nothing on its console within %s", w.bound), true)
			}
			printed = true
		case <-tick.C:
			printed = printed || (!w.restore && w.printed())
		}
	}
}

// printed reports whether the console has grown since the machine started.
func (w bootWatch) printed() bool {
	fi, err := os.Stat(w.console)
	return err == nil && fi.Size() > w.offset
}

// failure is the error for what happened; bounded says the watchdog's
// bound ran out.
func (w bootWatch) failure(what string, bounded bool) error {
	how := "accelerator " + w.accel
	if bounded {
		how = "boot watchdog; " + how
	}
	return fmt.Errorf("vm %q: %w: %s (%s); last console lines:\n%s",
		w.hostname, api.ErrBootFailed, what, how, consoleTail(w.console, w.offset))
}

// consoleTail returns the last lines the console log holds past offset,
// indented, or a note that there are none.
func consoleTail(path string, offset int64) string {
	const none = "  (none)"
	f, err := os.Open(path)
	if err != nil {
		return none
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || fi.Size() <= offset {
		return none
	}
	from := max(offset, fi.Size()-consoleTailBytes)
	b, err := io.ReadAll(io.NewSectionReader(f, from, fi.Size()-from))
	if err != nil {
		return none
	}
	b = bytes.ReplaceAll(b, []byte("\r"), nil)
	var lines []string
	for l := range strings.SplitSeq(string(b), "\n") {
		if strings.TrimSpace(l) != "" {
			lines = append(lines, "  "+strings.TrimRight(l, " \t"))
		}
	}
	if from > offset && len(lines) > 0 {
		lines = lines[1:] // cut mid-line
	}
	if len(lines) == 0 {
		return none
	}
	return strings.Join(lines[max(0, len(lines)-consoleTailLines):], "\n")
}

// consoleSize is the console log's size now, zero when it does not exist.
func consoleSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}
