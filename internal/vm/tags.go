package vm

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/config"
)

// namePrefix marks the friendly-name tag. A VM has at most one; once set it
// cannot be changed or removed, and it is unique among the daemon's VMs.
const namePrefix = "name="

var dnsLabel = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// friendlyName returns the value of the name= tag in tags, if any.
func friendlyName(tags []string) (string, bool) {
	for _, t := range tags {
		if v, ok := strings.CutPrefix(t, namePrefix); ok {
			return v, true
		}
	}
	return "", false
}

// checkNameTags validates the name= tags of a tag list on its own: at most
// one, a lowercase DNS label that cannot be mistaken for a generated
// hostname.
func checkNameTags(tags []string, groups []config.HostGroup) error {
	var names []string
	for _, t := range tags {
		if v, ok := strings.CutPrefix(t, namePrefix); ok {
			names = append(names, v)
		}
	}
	switch {
	case len(names) == 0:
		return nil
	case len(names) > 1:
		return fmt.Errorf("%w: more than one name= tag: %v", api.ErrInvalid, names)
	case !dnsLabel.MatchString(names[0]):
		return fmt.Errorf("%w: name %q must be a lowercase DNS label of at most 63 characters", api.ErrInvalid, names[0])
	}
	for _, g := range groups {
		if n, ok := strings.CutPrefix(names[0], g.Name+"-"); ok && isDigits(n) {
			return fmt.Errorf("%w: name %q looks like a generated hostname of host group %q", api.ErrInvalid, names[0], g.Name)
		}
	}
	return nil
}

func isDigits(s string) bool {
	return s != "" && strings.Trim(s, "0123456789") == ""
}

// applyTagUpdate returns the tags that result from applying u to current.
// name= may be added when the VM has none, and never removed or changed.
// It takes time linear in the size of current and u: tags are looked up in
// sets, never searched for in lists. New tags are checked against the
// limits; a VM that is over them already (an older record) may still shed
// tags.
func applyTagUpdate(current []string, u api.VMTagUpdate) ([]string, error) {
	name, hasName := friendlyName(current)
	if u.Replace != nil && (len(u.Add) > 0 || len(u.Remove) > 0) {
		return nil, fmt.Errorf("%w: replace cannot be combined with add or remove", api.ErrInvalid)
	}
	var errs []error
	var out tagSet
	if u.Replace != nil {
		out = newTagSet(len(*u.Replace) + 1)
		errs = append(errs, checkTagLengths(*u.Replace))
		for _, t := range *u.Replace {
			if strings.HasPrefix(t, namePrefix) {
				errs = append(errs, fmt.Errorf("replace cannot set %q: the name= tag is immutable", t))
			}
		}
		if hasName {
			out.add(namePrefix + name)
		}
		out.add(*u.Replace...)
	} else {
		errs = append(errs, checkTagLengths(u.Add))
		out = newTagSet(len(current) + len(u.Add))
		remove := make(map[string]bool, len(u.Remove))
		for _, t := range u.Remove {
			if strings.HasPrefix(t, namePrefix) {
				errs = append(errs, fmt.Errorf("cannot remove %q: the name= tag is immutable", t))
			}
			remove[t] = true
		}
		for _, t := range current {
			if !remove[t] {
				out.add(t)
			}
		}
		out.add(u.Add...)
	}
	if u.Name != nil {
		errs = append(errs, checkTagLengths([]string{namePrefix + *u.Name}))
		out.add(namePrefix + *u.Name)
	}
	if n, ok := friendlyName(out.list); hasName && ok && n != name || countName(out.list) > 1 {
		errs = append(errs, fmt.Errorf("the name= tag is immutable (it is %q)", name))
	}
	if len(out.list) > api.MaxTagsPerVM && len(out.list) > len(current) {
		errs = append(errs, fmt.Errorf("a vm has at most %d tags (the limit), and this update would give it %d", api.MaxTagsPerVM, len(out.list)))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("%w: %w", api.ErrInvalid, err)
	}
	if out.list == nil {
		out.list = []string{}
	}
	return out.list, nil
}

// checkTags checks the tags of a new VM against the limits. Its errors
// have no class: checkCreate gathers them as ErrInvalid.
func checkTags(tags []string) error {
	errs := []error{checkTagLengths(tags)}
	if len(tags) > api.MaxTagsPerVM {
		errs = append(errs, fmt.Errorf("a vm has at most %d tags (the limit), and %d were given", api.MaxTagsPerVM, len(tags)))
	}
	return errors.Join(errs...)
}

// checkTagLengths reports the first tag longer than the limit, if any.
func checkTagLengths(tags []string) error {
	for _, t := range tags {
		if len(t) > api.MaxTagBytes {
			return fmt.Errorf("tag %.40q... is %d bytes long: the limit is %d bytes", t, len(t), api.MaxTagBytes)
		}
	}
	return nil
}

func countName(tags []string) int {
	n := 0
	for _, t := range tags {
		if strings.HasPrefix(t, namePrefix) {
			n++
		}
	}
	return n
}

// tagSet is a list of distinct non-empty tags in the order they were
// first added.
type tagSet struct {
	list []string
	seen map[string]bool
}

// newTagSet returns a set sized for about n tags.
func newTagSet(n int) tagSet {
	return tagSet{list: make([]string, 0, n), seen: make(map[string]bool, n)}
}

func (s *tagSet) add(tags ...string) {
	for _, t := range tags {
		if t != "" && !s.seen[t] {
			s.seen[t] = true
			s.list = append(s.list, t)
		}
	}
}
