package config

import "testing"

func TestGroupImageParsesAndOverrides(t *testing.T) {
	cfg, err := Parse("f.yaml", []byte(yamlText(
		"config:",
		"  host_groups:",
		"  - name: py",
		"    image: python:3.12-slim",
		"  - name: plain",
		"  image: min",
	)))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.ImageFor(cfg.HostGroups[0]); got != "python:3.12-slim" {
		t.Errorf("ImageFor(py) = %q, want the group's image", got)
	}
	if got := cfg.ImageFor(cfg.HostGroups[1]); got != "min" {
		t.Errorf("ImageFor(plain) = %q, want the top-level image", got)
	}
	back, err := Parse("f.yaml", []byte(Format(cfg)))
	if err != nil {
		t.Fatalf("Parse(Format()): %v", err)
	}
	if back.HostGroups[0].Image != "python:3.12-slim" {
		t.Errorf("Format dropped the group image: %+v", back.HostGroups[0])
	}
}
