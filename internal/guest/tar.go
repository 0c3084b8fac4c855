package guest

import (
	"fmt"
	"path"
	"strings"

	"github.com/openslicer/openslicer/api"
)

// Names and exclusions in copy tar streams (spec §3.8): entries are
// relative to the copied directory, with forward slashes.

// entryName checks the name of an uploaded tar entry and returns it clean
// ("." for the directory itself). An absolute name, a ".." component or a
// NUL would reach outside the destination or confuse the file system: the
// upload is refused. Names merely containing dots ("a..b") are fine.
func entryName(name string) (string, error) {
	switch {
	case name == "" || strings.ContainsRune(name, 0):
		return "", fmt.Errorf("%w: tar entry %q has no usable name", api.ErrInvalid, name)
	case path.IsAbs(name):
		return "", fmt.Errorf("%w: tar entry %q is an absolute path", api.ErrInvalid, name)
	}
	for _, part := range strings.Split(name, "/") {
		if part == ".." {
			return "", fmt.Errorf("%w: tar entry %q escapes the destination", api.ErrInvalid, name)
		}
	}
	return path.Clean(name), nil
}

// parseExcludes checks the exclude globs (path.Match syntax) and returns
// them clean: no trailing slash, no leading "./", no empty ones.
func parseExcludes(globs []string) ([]string, error) {
	var out []string
	for _, g := range globs {
		if strings.ContainsRune(g, 0) {
			return nil, fmt.Errorf("%w: exclude %q contains a NUL byte", api.ErrInvalid, g)
		}
		clean := strings.TrimPrefix(strings.TrimRight(g, "/"), "./")
		if clean == "" {
			continue
		}
		if _, err := path.Match(clean, ""); err != nil {
			return nil, fmt.Errorf("%w: exclude %q: %v", api.ErrInvalid, g, err)
		}
		out = append(out, clean)
	}
	return out, nil
}

// excluded reports whether the entry rel (clean, relative) is excluded: a
// glob matches its relative path or its base name, or those of one of the
// directories it is in, so excluding a directory excludes what is inside.
func excluded(rel string, globs []string) bool {
	if len(globs) == 0 {
		return false
	}
	for end := 0; end <= len(rel); end++ {
		if end < len(rel) && rel[end] != '/' {
			continue
		}
		prefix := rel[:end]
		base := path.Base(prefix)
		for _, g := range globs {
			if ok, _ := path.Match(g, prefix); ok {
				return true
			}
			if ok, _ := path.Match(g, base); ok {
				return true
			}
		}
	}
	return false
}
