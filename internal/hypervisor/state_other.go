//go:build !linux

package hypervisor

import "os"

// moveInto renames the directory tmp to path, removing what path held
// first: without an atomic exchange, path is briefly missing.
func moveInto(tmp, path string) (replaced bool, err error) {
	if err := os.RemoveAll(path); err != nil {
		return false, err
	}
	return false, os.Rename(tmp, path)
}
