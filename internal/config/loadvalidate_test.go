package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadAndValidateReportsParseAndValueProblemsTogether(t *testing.T) {
	path := filepath.Join(t.TempDir(), "slicer.yaml")
	data := "config:\n  host_groups:\n  - name: sbox\n    storage_size: 25Q\n  bogus: 1\n"
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := LoadAndValidate(path, "qemu", ValidateOptions{})
	if err == nil {
		t.Fatal("LoadAndValidate accepted a bad config")
	}
	for _, want := range []string{
		path + ":5: config.bogus: unknown key",
		path + ":4: config.host_groups[0].storage_size: \"25Q\" is not a size",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q\nmissing %q", err, want)
		}
	}
}
