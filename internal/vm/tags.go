package vm

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
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
func applyTagUpdate(current []string, u api.VMTagUpdate) ([]string, error) {
	name, hasName := friendlyName(current)
	if u.Replace != nil && (len(u.Add) > 0 || len(u.Remove) > 0) {
		return nil, fmt.Errorf("%w: replace cannot be combined with add or remove", api.ErrInvalid)
	}
	var errs []error
	var out []string
	if u.Replace != nil {
		for _, t := range *u.Replace {
			if strings.HasPrefix(t, namePrefix) {
				errs = append(errs, fmt.Errorf("replace cannot set %q: the name= tag is immutable", t))
			}
		}
		if hasName {
			out = append(out, namePrefix+name)
		}
		out = appendUnique(out, *u.Replace...)
	} else {
		out = slices.Clone(current)
		for _, t := range u.Remove {
			if strings.HasPrefix(t, namePrefix) {
				errs = append(errs, fmt.Errorf("cannot remove %q: the name= tag is immutable", t))
			}
			out = slices.DeleteFunc(out, func(x string) bool { return x == t })
		}
		out = appendUnique(out, u.Add...)
	}
	if u.Name != nil {
		out = appendUnique(out, namePrefix+*u.Name)
	}
	if n, ok := friendlyName(out); hasName && ok && n != name || countName(out) > 1 {
		errs = append(errs, fmt.Errorf("the name= tag is immutable (it is %q)", name))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("%w: %w", api.ErrInvalid, err)
	}
	if out == nil {
		out = []string{}
	}
	return out, nil
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

func appendUnique(tags []string, add ...string) []string {
	for _, t := range add {
		if t != "" && !slices.Contains(tags, t) {
			tags = append(tags, t)
		}
	}
	return tags
}
