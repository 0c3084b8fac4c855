// Package cpv1 holds the rules of the cp-v1 copy protocol (spec §3.8) that
// both ends apply to a directory's tar stream: which entry names are
// accepted, and which entries exclude globs leave out. The public client
// (uploads it builds, downloads it extracts) and the guest agent (uploads
// it extracts, downloads it builds) use this one implementation, so a name
// or glob gets the same verdict on either side. It is public because
// client may import only public packages; it imports only api.
package cpv1

import (
	"fmt"
	"path"
	"strings"

	"github.com/openslicer/openslicer/api"
)

// Entries are named relative to the copied directory, with forward
// slashes; "." (or "./") is the directory itself.

// EntryName checks the name of a tar entry and returns it clean ("." for
// the directory itself). An empty name, a NUL byte, an absolute name or a
// ".." component would reach outside the destination or confuse the file
// system: such an entry is refused, with an error of class api.ErrInvalid,
// and so is the copy. Names merely containing dots ("a..b") are fine.
func EntryName(name string) (string, error) {
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

// ParseExcludes checks exclude globs (path.Match syntax) and returns them
// clean: no trailing slash, no leading "./" (however many), no empty ones.
// A glob with a NUL byte or bad syntax is an error of class
// api.ErrInvalid.
func ParseExcludes(globs []string) ([]string, error) {
	var out []string
	for _, g := range globs {
		if strings.ContainsRune(g, 0) {
			return nil, fmt.Errorf("%w: exclude %q contains a NUL byte", api.ErrInvalid, g)
		}
		clean := strings.TrimRight(g, "/")
		for strings.HasPrefix(clean, "./") {
			clean = strings.TrimLeft(clean[2:], "/")
		}
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

// Excluded reports whether the entry rel (clean, relative, as EntryName
// returns it) is left out by globs (as ParseExcludes returns them): a glob
// matches its relative path or its base name, or those of one of the
// directories it is in, so excluding a directory excludes what is inside.
func Excluded(rel string, globs []string) bool {
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
