package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/client"
	"github.com/openslicer/openslicer/internal/testenv"
)

// sshKeygenStandIn stands in for ssh-keygen in the min image (which has no
// OpenSSH): -A writes a new host key of random bytes, as the real one
// writes new keys, so the fix-up's effect can be seen.
const sshKeygenStandIn = `cat > /usr/bin/ssh-keygen <<'EOF'
#!/bin/sh
[ "$1" = -A ] || exit 2
mkdir -p /etc/ssh
head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n' > /etc/ssh/ssh_host_ed25519_key
echo pub > /etc/ssh/ssh_host_ed25519_key.pub
EOF
chmod 0755 /usr/bin/ssh-keygen
`

// parentSetup gives the source VM a file to share, an identity for the
// fix-ups to change (machine-id, an /etc/hosts entry of its own name, which
// the agent writes at boot and this makes sure of, an SSH host key), and
// the ssh-keygen stand-in.
const parentSetup = `set -e
echo parent-data > /root/shared
printf '%s\n' 0123456789abcdef0123456789abcdef > /etc/machine-id
grep -qw "$(hostname)" /etc/hosts || echo "127.0.1.1 $(hostname)" >> /etc/hosts
mkdir -p /etc/ssh
echo parent-key > /etc/ssh/ssh_host_ed25519_key
` + sshKeygenStandIn + `sync
`

// identity is what a guest says of itself.
type identity struct {
	hostname, etcHostname, hosts, machineID, hostKey, shared string
}

func identityOf(t *testing.T, c *client.Client, host string) identity {
	t.Helper()
	out, _, code := execIn(t, c, host, &api.ExecRequest{Shell: "/bin/sh", UID: u32(0), Command: `hostname; echo ---; cat /etc/hostname; echo ---; grep 127.0.1.1 /etc/hosts; echo ---; cat /etc/machine-id; echo ---; cat /etc/ssh/ssh_host_ed25519_key; echo; echo ---; cat /root/shared`}, nil)
	parts := strings.Split(out, "---\n")
	if code != 0 || len(parts) != 6 {
		t.Fatalf("identity of %s: exit %d\n%s", host, code, out)
	}
	trim := func(i int) string { return strings.TrimSpace(parts[i]) }
	return identity{trim(0), trim(1), trim(2), trim(3), trim(4), trim(5)}
}

// TestColdFork runs the sequence of Slicer's SDK example cold-fork
// through the client against a real daemon, in an isolated group: a
// persistent VM writes a file and is stopped; it is committed with a cache
// key and listed by it; forks see the file and diverge, each with its own
// name, machine-id and SSH host key (a fork without fix-ups keeps the
// source's); the network override allow=[] is in force and described;
// the commit cannot be deleted while its source exists; at the end
// nothing is left.
func TestColdFork(t *testing.T) {
	testenv.RequireE2E(t)
	testenv.RequireRoot(t)
	lab := newNetLab(t)
	before := lab.state()
	d := startDaemonIn(t, lab.host, fmt.Sprintf(netGroupYAML, "cf", isolatedNet))
	c, ctx := d.client, context.Background()

	src := createReady(t, c, "cf", api.CreateNodeRequest{Persistent: true}).Hostname
	if _, errOut, code := execIn(t, c, src, &api.ExecRequest{Shell: "/bin/sh", UID: u32(0), Command: parentSetup}, nil); code != 0 {
		t.Fatalf("set up the source: exit %d: %s", code, errOut)
	}
	if _, err := c.CommitVM(ctx, src); !errors.Is(err, api.ErrConflict) || !strings.Contains(err.Error(), "Running") {
		t.Errorf("commit of a running vm = %v, want 409 naming its state", err)
	}
	if err := c.Shutdown(ctx, src, "shutdown"); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, c, src, api.StatusStopped)

	const cacheKey = "cold-fork-e2e"
	start := time.Now()
	commit, err := c.CommitVMWithOptions(ctx, src, api.CommitVMRequest{CacheKey: cacheKey, Tags: []string{"e2e"}})
	if err != nil {
		t.Fatalf("CommitVMWithOptions: %v", err)
	}
	t.Logf("commit of %s took %s", src, time.Since(start).Round(time.Millisecond))
	commits, err := c.ListCommits(ctx, client.CommitListOptions{CacheKey: cacheKey})
	if err != nil || len(commits) != 1 || commits[0].CommitID != commit.CommitID || commits[0].SourceHostname != src {
		t.Fatalf("ListCommits(cache key) = %+v, %v; want exactly %s", commits, err, commit.CommitID)
	}
	if _, err := c.CommitVMWithOptions(ctx, src, api.CommitVMRequest{CacheKey: cacheKey}); !errors.Is(err, api.ErrConflict) {
		t.Errorf("a second commit of the cache key = %v, want 409", err)
	}

	cv := c.CommittedVM(commit.CommitID)
	start = time.Now()
	closed, err := cv.Fork(ctx, client.WithTimeout(3*time.Minute), client.WithNetwork(api.ForkVMNetworkPolicy{Allow: &[]string{}}), client.WithTags("job=review"))
	if err != nil {
		t.Fatalf("Fork: %v", err)
	}
	t.Logf("fork to agent ready took %s", time.Since(start).Round(time.Millisecond))
	open, err := cv.Fork(ctx, client.WithTimeout(3*time.Minute))
	if err != nil {
		t.Fatalf("second Fork: %v", err)
	}
	bare, err := cv.Fork(ctx, client.WithTimeout(3*time.Minute), client.WithFixups())
	if err != nil {
		t.Fatalf("Fork without fix-ups: %v", err)
	}
	if closed.SourceHostname != src || closed.ChildStatus != "running" || closed.CommitID != commit.CommitID {
		t.Errorf("fork answer %+v", closed)
	}

	desc, err := c.Describe(ctx, closed.Hostname)
	if err != nil {
		t.Fatal(err)
	}
	if desc.ParentCommitID != commit.CommitID {
		t.Errorf("parent_commit_id = %q, want %s", desc.ParentCommitID, commit.CommitID)
	}
	if o := desc.Network.Override; o == nil || o.Allow == nil || len(o.Allow) != 0 {
		t.Errorf("override = %+v, want allow == []", o)
	}
	if !cmp.Equal(desc.Node.Tags, []string{"job=review"}) {
		t.Errorf("child tags %v, want the source's (none) and job=review", desc.Node.Tags)
	}
	// The override is in force: the group allows the service, the fork
	// that cleared its allow list does not reach it.
	if reach(t, c, closed.Hostname, labInet+":8080") || !reach(t, c, open.Hostname, labInet+":8080") {
		t.Errorf("with allow [] %s must not reach %s:8080 and %s (inherited policy) must", closed.Hostname, labInet, open.Hostname)
	}

	hex32 := regexp.MustCompile(`^[0-9a-f]{32}$`)
	var ids []string
	for _, child := range []string{closed.Hostname, open.Hostname} {
		id := identityOf(t, c, child)
		if id.shared != "parent-data" {
			t.Errorf("%s sees /root/shared = %q, want the source's file", child, id.shared)
		}
		if id.hostname != child || id.etcHostname != child || strings.Join(strings.Fields(id.hosts), " ") != "127.0.1.1 "+child {
			t.Errorf("%s: hostname %q, /etc/hostname %q, hosts %q; want its own name", child, id.hostname, id.etcHostname, id.hosts)
		}
		if !hex32.MatchString(id.machineID) || id.machineID == "0123456789abcdef0123456789abcdef" {
			t.Errorf("%s machine-id %q, want a new one", child, id.machineID)
		}
		if id.hostKey == "parent-key" || id.hostKey == "" {
			t.Errorf("%s ssh host key %q, want a new one", child, id.hostKey)
		}
		ids = append(ids, id.machineID)
	}
	if ids[0] == ids[1] {
		t.Errorf("both forks have machine-id %s", ids[0])
	}
	if id := identityOf(t, c, bare.Hostname); id.hostname != src || id.machineID != "0123456789abcdef0123456789abcdef" || id.hostKey != "parent-key" {
		t.Errorf("fork without fix-ups: %+v; want the source's name, machine-id and key", id)
	}

	// The forks diverge, and the source, booted again, sees neither.
	execIn(t, c, closed.Hostname, &api.ExecRequest{Shell: "/bin/sh", UID: u32(0), Command: "echo first > /root/shared; echo mine > /root/own; sync"}, nil)
	if out, _, _ := execIn(t, c, open.Hostname, &api.ExecRequest{Shell: "/bin/sh", UID: u32(0), Command: "cat /root/shared; test -e /root/own && echo own || true"}, nil); out != "parent-data\n" {
		t.Errorf("the second fork sees %q after the first wrote; want the source's file alone", out)
	}
	if _, err := c.Relaunch(ctx, src); err != nil {
		t.Fatalf("relaunch of the source: %v", err)
	}
	if id := identityOf(t, c, src); id.shared != "parent-data" || id.hostname != src {
		t.Errorf("source after its commit: %+v", id)
	}

	if resp, err := c.DeleteNode(ctx, "cf", closed.Hostname); err != nil || resp.DiskRemoved != "true" {
		t.Fatalf("DeleteVM child = %+v, %v", resp, err)
	}
	if _, err := c.DeleteCommit(ctx, commit.CommitID); !errors.Is(err, api.ErrConflict) || !strings.Contains(err.Error(), src) {
		t.Errorf("DeleteCommit while the source exists = %v, want 409 naming %s", err, src)
	}
	for _, h := range []string{open.Hostname, bare.Hostname} {
		if _, err := c.DeleteNode(ctx, "cf", h); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.DeleteCommit(ctx, commit.CommitID); !errors.Is(err, api.ErrConflict) {
		t.Errorf("DeleteCommit with the source still there = %v, want 409", err)
	}
	if _, err := c.DeleteNode(ctx, "cf", src); err != nil {
		t.Fatal(err)
	}
	if resp, err := c.DeleteCommit(ctx, commit.CommitID); err != nil || resp.Status != "deleted" {
		t.Fatalf("DeleteCommit = %+v, %v", resp, err)
	}
	if left, _ := c.ListCommits(ctx, client.CommitListOptions{}); len(left) != 0 {
		t.Errorf("commits left: %+v", left)
	}
	d.assertNothingLeft(t)
	if entries, _ := os.ReadDir(filepath.Join(d.dataDir, "commits")); len(entries) != 0 {
		t.Errorf("left in commits: %v", entries)
	}
	d.stop()
	if diff := cmp.Diff(before, lab.state()); diff != "" {
		t.Errorf("network objects left (-before +after):\n%s", diff)
	}
}
