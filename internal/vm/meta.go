package vm

import (
	"context"
	"fmt"

	"github.com/openslicer/openslicer/api"
)

// Tags returns the tags of a VM.
func (m *Manager) Tags(hostname string) (api.VMTags, error) {
	in, err := m.get(hostname)
	if err != nil {
		return api.VMTags{}, err
	}
	n := in.node()
	if n.Tags == nil {
		n.Tags = []string{}
	}
	return api.VMTags{Hostname: hostname, Tags: n.Tags}, nil
}

// UpdateTags applies u atomically and returns the resulting tags.
func (m *Manager) UpdateTags(ctx context.Context, hostname string, u api.VMTagUpdate) (api.VMTags, error) {
	in, err := m.get(hostname)
	if err != nil {
		return api.VMTags{}, err
	}
	// The table lock makes the name-uniqueness check and the write atomic.
	m.mu.Lock()
	defer m.mu.Unlock()
	in.mu.Lock()
	defer in.mu.Unlock()
	tags, err := applyTagUpdate(in.rec.Tags, u)
	if err != nil {
		return api.VMTags{}, err
	}
	if err := m.checkNamesLocked(hostname, tags); err != nil {
		return api.VMTags{}, err
	}
	rec := in.rec
	rec.Tags = tags
	if err := m.opt.Store.Put(rec); err != nil {
		return api.VMTags{}, err
	}
	in.rec = rec
	return api.VMTags{Hostname: hostname, Tags: tags}, nil
}

// checkNamesLocked checks the name= tag in tags (for the VM hostname, ""
// for a new one): valid, and neither another VM's name nor hostname. The
// caller holds m.mu; it must not hold the lock of another instance.
func (m *Manager) checkNamesLocked(hostname string, tags []string) error {
	if err := checkNameTags(tags, m.opt.Config.HostGroups); err != nil {
		return err
	}
	name, ok := friendlyName(tags)
	if !ok {
		return nil
	}
	for host, other := range m.vms {
		if host == hostname {
			continue
		}
		if host == name {
			return fmt.Errorf("name %q is the hostname of another vm: %w", name, api.ErrConflict)
		}
		other.mu.Lock()
		n, has := friendlyName(other.rec.Tags)
		other.mu.Unlock()
		if has && n == name {
			return fmt.Errorf("name %q is taken by vm %q: %w", name, host, api.ErrConflict)
		}
	}
	return nil
}

// Describe returns a VM with its storage, image and network policy.
func (m *Manager) Describe(hostname string) (api.VMDescription, error) {
	in, err := m.get(hostname)
	if err != nil {
		return api.VMDescription{}, err
	}
	node := in.node()
	return api.VMDescription{
		Node: node, Storage: "image", Image: m.opt.Config.Image,
		Network: m.networkDescription(in),
	}, nil
}
