//go:build unix

package secrets

import (
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// checkOwner refuses a directory owned by another user: the store must be
// readable only by the daemon's user.
func checkOwner(dir string, fi fs.FileInfo) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	if uid := os.Getuid(); int(st.Uid) != uid {
		return fmt.Errorf("secrets dir %s is owned by uid %d, not by this process's uid %d; fix with: chown %d %s", dir, st.Uid, uid, uid, dir)
	}
	return nil
}
