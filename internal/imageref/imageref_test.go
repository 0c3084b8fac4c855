package imageref

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in       string
		insecure bool
		want     Source
		errHas   string
	}{
		{in: "min", want: Source{Kind: Builtin, Name: "min"}},
		{in: "debian", want: Source{Kind: Builtin, Name: "debian"}},
		{in: "debian:12", want: Source{Kind: Registry, Name: "index.docker.io/library/debian:12"}},
		{in: "python:3.12-slim", want: Source{Kind: Registry, Name: "index.docker.io/library/python:3.12-slim"}},
		{in: "alpine", want: Source{Kind: Registry, Name: "index.docker.io/library/alpine:latest"}},
		{in: "ghcr.io/openfaasltd/slicer-systemd:6.1.90-x86_64-latest",
			want: Source{Kind: Registry, Name: "ghcr.io/openfaasltd/slicer-systemd:6.1.90-x86_64-latest"}},
		{in: "registry.local:5000/team/app@sha256:" + strings.Repeat("a", 64), insecure: true,
			want: Source{Kind: Registry, Name: "registry.local:5000/team/app@sha256:" + strings.Repeat("a", 64), Insecure: true}},
		{in: "127.0.0.1:5000/x", insecure: true, want: Source{Kind: Registry, Name: "127.0.0.1:5000/x:latest", Insecure: true}},
		{in: "oci:/srv/layout", want: Source{Kind: OCILayout, Name: "/srv/layout"}},
		{in: "oci:./layout:v1", want: Source{Kind: OCILayout, Name: "./layout", Ref: "v1"}},
		{in: "oci-archive:img.tar", want: Source{Kind: OCIArchive, Name: "img.tar"}},
		{in: "oci-archive:img.tar:latest", want: Source{Kind: OCIArchive, Name: "img.tar", Ref: "latest"}},
		{in: "docker-archive:/tmp/save.tar", want: Source{Kind: DockerArchive, Name: "/tmp/save.tar"}},
		{in: "docker-archive:/tmp/save.tar:busybox:1.36", want: Source{Kind: DockerArchive, Name: "/tmp/save.tar", Ref: "busybox:1.36"}},

		{in: "", errHas: "empty"},
		{in: " min", errHas: "spaces"},
		{in: "oci:", errHas: "needs a path"},
		{in: "oci:dir:", errHas: "empty reference"},
		{in: "docker-archive:x.tar:Not A Tag", errHas: "not a repo:tag"},
		{in: "Upper/Case", errHas: "OCI reference"},
		{in: "a b", errHas: "OCI reference"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := Parse(tt.in, tt.insecure)
			if tt.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errHas) {
					t.Fatalf("Parse(%q) = %+v, %v; want error containing %q", tt.in, got, err, tt.errHas)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Fatalf("Parse(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
			back, err := Parse(got.String(), tt.insecure)
			if err != nil || back != got {
				t.Fatalf("Parse(String()=%q) = %+v, %v; want %+v", got.String(), back, err, got)
			}
		})
	}
}

func TestReferenceScheme(t *testing.T) {
	for _, tt := range []struct {
		in       string
		insecure bool
		want     string
	}{
		{"registry.example:5000/app:v1", true, "http"},
		{"registry.example:5000/app:v1", false, "https"},
	} {
		s, err := Parse(tt.in, tt.insecure)
		if err != nil {
			t.Fatal(err)
		}
		ref, err := s.Reference()
		if err != nil {
			t.Fatal(err)
		}
		if got := ref.Context().Registry.Scheme(); got != tt.want {
			t.Errorf("%s insecure=%v: scheme %q, want %q", tt.in, tt.insecure, got, tt.want)
		}
	}
	if _, err := (Source{Kind: Builtin, Name: "min"}).Reference(); err == nil {
		t.Fatal("Reference of a builtin: want an error")
	}
}
