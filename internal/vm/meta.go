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
//
// The new tags are computed without holding any lock that lists need; only
// the store write and the swap into the table happen under the VM's lock
// (and, when the update gives the VM its name, the table lock, which makes
// the uniqueness check and the write atomic against creates and other
// updates). Updates of one VM take turns on its tagsMu, so none is lost.
func (m *Manager) UpdateTags(ctx context.Context, hostname string, u api.VMTagUpdate) (api.VMTags, error) {
	in, err := m.get(hostname)
	if err != nil {
		return api.VMTags{}, err
	}
	in.tagsMu.Lock()
	defer in.tagsMu.Unlock()
	in.mu.Lock()
	current := in.rec.Tags // never changed in place: updates swap in a new slice
	in.mu.Unlock()

	tags, err := applyTagUpdate(current, u)
	if err != nil {
		return api.VMTags{}, err
	}
	if err := checkNameTags(tags, m.opt.Config.HostGroups); err != nil {
		return api.VMTags{}, err
	}
	if name, ok := friendlyName(tags); ok {
		if old, had := friendlyName(current); !had || old != name {
			m.mu.Lock()
			defer m.mu.Unlock()
			if err := m.nameFreeLocked(hostname, name); err != nil {
				return api.VMTags{}, err
			}
		}
	}
	in.mu.Lock()
	defer in.mu.Unlock()
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
	return m.nameFreeLocked(hostname, name)
}

// nameFreeLocked checks that name is neither another VM's name nor its
// hostname. The caller holds m.mu; it must not hold the lock of another
// instance.
func (m *Manager) nameFreeLocked(hostname, name string) error {
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
	in.mu.Lock()
	commit, parent := in.rec.CommitID, in.rec.ParentCommit
	in.mu.Unlock()
	return api.VMDescription{
		Node: node, Storage: "image", Image: m.opt.Config.Image,
		CommitID: commit, ParentCommitID: parent,
		Network: m.networkDescription(in),
	}, nil
}
