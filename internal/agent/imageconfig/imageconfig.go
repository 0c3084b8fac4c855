// Package imageconfig is the file through which an OCI image's config
// reaches the guest: the image builder (internal/image) writes it into
// every OCI image's root file system when it builds the image's base, so
// it is in every VM disk cloned from that base, on every boot, whoever
// boots it; the guest agent (internal/guest) reads it for the defaults of
// each exec, shell, copy and file-system request. An image without the
// file (min) has no defaults of its own. It imports nothing.
package imageconfig

import (
	"encoding/json"
	"fmt"
)

// Path is where the file is in the guest.
const Path = "/etc/slicer/image.json"

// Config is the part of an OCI image's config (its "config" object) that
// sets how the guest runs a process when a request does not say.
type Config struct {
	// Env holds KEY=VALUE entries, as in the image (PATH, LANG, ...).
	Env []string `json:"env,omitempty"`
	// WorkingDir is the directory processes start in.
	WorkingDir string `json:"working_dir,omitempty"`
	// User is the image's user: "name", "uid", "name:group" or
	// "uid:gid", as Docker writes it.
	User string `json:"user,omitempty"`
}

// Marshal returns the file's content.
func (c Config) Marshal() []byte {
	data, _ := json.MarshalIndent(c, "", "  ") // only strings: cannot fail
	return append(data, '\n')
}

// Parse reads the file's content.
func Parse(data []byte) (Config, error) {
	var c Config
	if err := json.Unmarshal(data, &c); err != nil {
		return Config{}, fmt.Errorf("%s: %w", Path, err)
	}
	return c, nil
}
