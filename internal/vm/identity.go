package vm

import (
	"context"
	"crypto/rand"
	"fmt"
	"strings"
	"time"

	"github.com/openslicer/openslicer/api"
)

// identityTimeout bounds giving a restored guest its identity.
const identityTimeout = time.Minute

// identityEntropyBytes is how much host randomness is written into a
// restored guest's /dev/urandom.
const identityEntropyBytes = 64

// freshIdentity gives a VM that did not boot (a clone restored from a
// snapshot template, whose memory was the template's) an identity of its
// own before its create answers, in one place:
//
//   - its clock set to the host's (the agent's clock route);
//   - its hostname: the kernel's (/proc/sys/kernel/hostname),
//     /etc/hostname, and /etc/hosts entries naming the template;
//   - a new /etc/machine-id (and D-Bus's copy), where the image has one;
//   - host randomness written into /dev/urandom. This mixes it into the
//     kernel's input pool but does not force the kernel's random number
//     generator to reseed: until it does (the kernel reseeds on its own
//     schedule, within about a minute, seconds early in its life), two
//     clones may draw the same bytes.
//
// All but the clock go through the agent's exec, as root. The agent's
// identity routes (hostname, address, machine-id, RNG reseed) are to
// replace this script once they are merged: they set the same things
// through the agent itself, and can force the reseed (RNDRESEEDCRNG).
// The MAC and address are not changed: snapshot groups have no network
// yet (config validation refuses one).
func (m *Manager) freshIdentity(ctx context.Context, in *instance, template string) error {
	in.mu.Lock()
	host, client := guestName(in.rec), in.agent
	in.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, identityTimeout)
	defer cancel()
	syncClock(ctx, m.log.With("vm", host), client)
	var seed [identityEntropyBytes]byte
	rand.Read(seed[:])
	script := identityScript(template, host, newMachineID(), seed[:])
	root := uint32(0)
	res, err := client.ExecBuffered(ctx, &api.ExecRequest{Command: script, Shell: "/bin/sh", UID: &root, GID: &root})
	if err != nil {
		return fmt.Errorf("vm %q: give the restored guest its identity: %w", host, err)
	}
	if res.ExitCode != 0 || res.Error != "" {
		return fmt.Errorf("vm %q: give the restored guest its identity: exit %d: %s", host, res.ExitCode,
			firstNonEmpty(strings.TrimSpace(res.Error), strings.TrimSpace(res.Stderr), "no output"))
	}
	return nil
}

// identityScript is the shell script freshIdentity runs in a clone named
// host, restored from a template that booted as template: hostname,
// /etc/hosts and machine-id as a fork's fix-ups make them
// (fixupScript), and seed written into /dev/urandom as octal escapes
// (POSIX printf; busybox's too).
func identityScript(template, host, machineID string, seed []byte) string {
	var b strings.Builder
	fmt.Fprintf(&b, "set -e\nprintf '%%s' '%[1]s' > /proc/sys/kernel/hostname\nprintf '%%s\\n' '%[1]s' > /etc/hostname\n", host)
	b.WriteString("printf '")
	for _, c := range seed {
		fmt.Fprintf(&b, `\%03o`, c)
	}
	b.WriteString("' > /dev/urandom\n")
	fixups := fixupScript([]string{api.FixupHostname}, template, host, "")
	b.WriteString(strings.TrimPrefix(fixups, "set -e\n"))
	// machine-id only where the image has one (min has none).
	fmt.Fprintf(&b, "if [ -f /etc/machine-id ]; then\n%s\nfi\n",
		strings.TrimSuffix(strings.TrimPrefix(fixupScript([]string{api.FixupMachineID}, template, host, machineID), "set -e\n"), "sync\n"))
	return b.String()
}
