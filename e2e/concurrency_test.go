package e2e

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/client"
	"github.com/openslicer/openslicer/internal/testenv"
)

// TestTwentyParallelCreates: twenty creates at once in one group get twenty
// distinct names and all reach Running with their agents up; a delete
// issued while one of them is still booting is safe.
func TestTwentyParallelCreates(t *testing.T) {
	testenv.RequireE2E(t)
	d := startDaemonYAML(t, `  - name: par
    count: 0
    vcpu: 1
    ram_mb: 256
    storage_size: 512M
`)
	c, ctx := d.client, context.Background()
	const n = 20
	names := make(chan string, n)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			node, err := c.CreateNode(ctx, "par", api.CreateNodeRequest{}, client.CreateOptions{Wait: "agent", Timeout: 10 * time.Minute})
			if err != nil {
				t.Errorf("CreateNode: %v", err)
				return
			}
			names <- node.Hostname
		}()
	}
	// One more, deleted while it boots.
	wg.Add(1)
	go func() {
		defer wg.Done()
		if _, err := c.CreateNode(ctx, "par", api.CreateNodeRequest{Tags: []string{"doomed"}}, client.CreateOptions{Wait: "agent", Timeout: 10 * time.Minute}); err == nil {
			t.Errorf("create of a vm deleted during boot succeeded")
		}
	}()
	for deleted := false; !deleted; time.Sleep(20 * time.Millisecond) {
		doomed, _ := c.ListNodes(ctx, client.ListOptions{Tag: "doomed"})
		if len(doomed) == 1 {
			if _, err := c.DeleteNode(ctx, "par", doomed[0].Hostname); err != nil {
				t.Errorf("delete during boot: %v", err)
			}
			deleted = true
		}
	}
	wg.Wait()
	close(names)
	seen := map[string]bool{}
	for name := range names {
		if seen[name] {
			t.Errorf("name %s given twice", name)
		}
		seen[name] = true
	}
	nodes, err := c.GroupNodes(ctx, "par", client.ListOptions{})
	if err != nil || len(nodes) != n {
		t.Fatalf("GroupNodes = %d nodes, %v; want %d", len(nodes), err, n)
	}
	for _, node := range nodes {
		if node.Status != api.StatusRunning || !seen[node.Hostname] {
			t.Errorf("vm %s is %s", node.Hostname, node.Status)
		}
		if _, err := c.DeleteNode(ctx, "par", node.Hostname); err != nil {
			t.Errorf("DeleteNode(%s): %v", node.Hostname, err)
		}
	}
	d.assertNothingLeft(t)
}
