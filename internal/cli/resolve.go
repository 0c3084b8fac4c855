package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/client"
)

// nameTag is the tag that carries a VM's friendly name.
const nameTag = "name="

// withName runs fn with a VM argument as given. If that fails with a 404,
// the argument may be a friendly name: when exactly one VM carries the tag
// name=<arg>, fn runs again with its hostname. Otherwise the first error
// stands.
func withName(ctx context.Context, c *client.Client, arg string, fn func(host string) error) error {
	err := fn(arg)
	if !errors.Is(err, api.ErrNotFound) {
		return err
	}
	nodes, lerr := c.ListNodes(ctx, client.ListOptions{Tag: nameTag + arg})
	if lerr != nil {
		return errors.Join(err, fmt.Errorf("look up name %q: %w", arg, lerr))
	}
	node, merr := onlyNamed(nodes, arg)
	if merr != nil {
		if errors.Is(merr, api.ErrNotFound) {
			return err
		}
		return merr
	}
	return fn(node.Hostname)
}

// findNode looks a VM argument up in the full node list: an exact hostname,
// or else the one VM whose name tag matches.
func findNode(ctx context.Context, c *client.Client, arg string) (*api.Node, error) {
	nodes, err := c.ListNodes(ctx, client.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list VMs: %w", err)
	}
	return matchNode(nodes, arg)
}

// matchNode finds arg among nodes by hostname, then by friendly name.
func matchNode(nodes []api.Node, arg string) (*api.Node, error) {
	for i := range nodes {
		if nodes[i].Hostname == arg {
			return &nodes[i], nil
		}
	}
	return onlyNamed(nodes, arg)
}

// onlyNamed returns the single node tagged name=<name>.
func onlyNamed(nodes []api.Node, name string) (*api.Node, error) {
	var found []*api.Node
	for i := range nodes {
		for _, t := range nodes[i].Tags {
			if t == nameTag+name {
				found = append(found, &nodes[i])
				break
			}
		}
	}
	switch len(found) {
	case 0:
		return nil, fmt.Errorf("vm %q: %w", name, api.ErrNotFound)
	case 1:
		return found[0], nil
	}
	hosts := make([]string, len(found))
	for i, n := range found {
		hosts[i] = n.Hostname
	}
	return nil, fmt.Errorf("name %q matches %d VMs (%s); use a hostname", name, len(found), strings.Join(hosts, ", "))
}
