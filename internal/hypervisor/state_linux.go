package hypervisor

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// moveInto renames the directory tmp to path. When path exists (a state
// left from before, or an older daemon's state file), the two are
// exchanged in one step, so path always holds a whole state, and tmp is
// left holding the old one: replaced reports that.
func moveInto(tmp, path string) (replaced bool, err error) {
	if _, err := os.Lstat(path); errors.Is(err, os.ErrNotExist) {
		return false, os.Rename(tmp, path)
	}
	if err := unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, path, unix.RENAME_EXCHANGE); err != nil {
		return false, &os.LinkError{Op: "exchange", Old: tmp, New: path, Err: err}
	}
	return true, nil
}
