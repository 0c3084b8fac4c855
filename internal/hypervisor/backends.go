package hypervisor

import (
	"errors"
	"fmt"
	"slices"
	"sort"
)

// ErrUnknownBackend is returned for a backend name a daemon does not have,
// e.g. a VM recorded by a daemon configured with another hypervisor.
var ErrUnknownBackend = errors.New("unknown hypervisor backend")

// Backends are the backends of a daemon, by name: every VM record names
// the one that runs it, and only that one re-adopts, reclaims or restores
// its machine.
type Backends map[string]Backend

// NewBackends returns the set of bs, by their names; a name given twice
// keeps the first.
func NewBackends(bs ...Backend) Backends {
	set := Backends{}
	for _, b := range bs {
		if b == nil {
			continue
		}
		if _, ok := set[b.Name()]; !ok {
			set[b.Name()] = b
		}
	}
	return set
}

// Get returns the backend called name, or an error wrapping
// ErrUnknownBackend that names the ones there are.
func (s Backends) Get(name string) (Backend, error) {
	if b, ok := s[name]; ok {
		return b, nil
	}
	return nil, fmt.Errorf("%w %q: this daemon runs %v", ErrUnknownBackend, name, s.names())
}

func (s Backends) names() []string {
	names := make([]string, 0, len(s))
	for n := range s {
		names = append(names, n)
	}
	sort.Strings(names)
	return slices.Clip(names)
}
