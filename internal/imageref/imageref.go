// Package imageref parses the values of the config's `image:` and
// `kernel_image:` keys into a Source: a built-in image, an OCI reference in
// a registry, or a local OCI layout or archive named with skopeo's
// transport prefixes. It is pure: nothing is read or fetched.
//
// The forms, in the order they are tried:
//
//	min                          the built-in busybox image
//	debian                       the Debian image `slicer image build debian` makes
//	oci:DIR[:REF]                an OCI layout directory; REF is a tag
//	                             (org.opencontainers.image.ref.name), default
//	                             the layout's only image
//	oci-archive:FILE[:REF]       a tar of an OCI layout
//	docker-archive:FILE[:REF]    `docker save` output; REF is one of its
//	                             RepoTags (repo:tag), default its only image
//	anything else                an OCI reference: python:3.12-slim is
//	                             index.docker.io/library/python:3.12-slim
//
// As in skopeo, a local path ends at the first colon after the transport, so
// it cannot itself contain one. The bare words "min" and "debian" are the
// built-in images; Docker Hub's Debian is "debian:12" or
// "docker.io/library/debian".
package imageref

import (
	"errors"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

// Kind is where an image comes from.
type Kind string

// The kinds of Source.
const (
	Builtin       Kind = "builtin"
	Registry      Kind = "registry"
	OCILayout     Kind = "oci"
	OCIArchive    Kind = "oci-archive"
	DockerArchive Kind = "docker-archive"
)

// Built-in image names.
const (
	Min    = "min"
	Debian = "debian"
)

// Source is a parsed image value.
type Source struct {
	Kind Kind
	// Name is the built-in's name, the fully qualified registry reference
	// (index.docker.io/library/python:3.12-slim), or the local path.
	Name string
	// Ref selects one image inside a local layout or archive; "" means the
	// only one there.
	Ref string
	// Insecure allows plain HTTP (and unverified TLS) to the registry.
	Insecure bool
}

// String is the canonical spelling of s, which Parse accepts back.
func (s Source) String() string {
	switch s.Kind {
	case Builtin, Registry:
		return s.Name
	}
	if s.Ref != "" {
		return string(s.Kind) + ":" + s.Name + ":" + s.Ref
	}
	return string(s.Kind) + ":" + s.Name
}

// IsBuiltin reports whether s is the built-in image called name.
func (s Source) IsBuiltin(name string) bool {
	return s.Kind == Builtin && s.Name == name
}

// Reference is the registry reference of a Registry source.
func (s Source) Reference() (name.Reference, error) {
	if s.Kind != Registry {
		return nil, fmt.Errorf("%s is not a registry reference", s)
	}
	return name.ParseReference(s.Name, s.nameOptions()...)
}

func (s Source) nameOptions() []name.Option {
	if s.Insecure {
		return []name.Option{name.Insecure}
	}
	return nil
}

// Parse parses an image value. insecure is the config's insecure_registry;
// it only matters for registry references.
func Parse(value string, insecure bool) (Source, error) {
	v := strings.TrimSpace(value)
	if v != value {
		return Source{}, fmt.Errorf("image %q has leading or trailing spaces", value)
	}
	switch v {
	case "":
		return Source{}, errors.New("image is empty")
	case Min, Debian:
		return Source{Kind: Builtin, Name: v}, nil
	}
	for _, k := range []Kind{OCIArchive, DockerArchive, OCILayout} {
		rest, ok := strings.CutPrefix(v, string(k)+":")
		if !ok {
			continue
		}
		return parseLocal(k, rest)
	}
	ref, err := name.ParseReference(v, Source{Insecure: insecure}.nameOptions()...)
	if err != nil {
		return Source{}, fmt.Errorf("image %q is neither min, debian, oci:DIR, oci-archive:FILE, docker-archive:FILE nor an OCI reference: %w", v, err)
	}
	return Source{Kind: Registry, Name: ref.Name(), Insecure: insecure}, nil
}

// parseLocal parses PATH[:REF] after a transport prefix.
func parseLocal(k Kind, rest string) (Source, error) {
	path, ref, _ := strings.Cut(rest, ":")
	if path == "" {
		return Source{}, fmt.Errorf("%s: needs a path (%s:PATH[:REF])", k, k)
	}
	if strings.Contains(rest, ":") && ref == "" {
		return Source{}, fmt.Errorf("%s:%s: empty reference after the path", k, rest)
	}
	if ref != "" && k == DockerArchive {
		if _, err := name.NewTag(ref); err != nil {
			return Source{}, fmt.Errorf("%s:%s: %q is not a repo:tag: %w", k, rest, ref, err)
		}
	}
	return Source{Kind: k, Name: path, Ref: ref}, nil
}
