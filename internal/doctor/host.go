package doctor

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/openslicer/openslicer/internal/config"
)

// dirCheck looks at a daemon directory, or at its nearest existing parent
// when the daemon has yet to create it.
func dirCheck(check, dir string) Result {
	if dir == "" {
		return dirResult(check, dir, dir, 0, errors.New("no directory given"), nil)
	}
	existing := existingAncestor(dir)
	var st unix.Statfs_t
	if err := unix.Statfs(existing, &st); err != nil {
		return dirResult(check, dir, existing, 0, err, nil)
	}
	free := st.Bavail * uint64(st.Bsize)
	return dirResult(check, dir, existing, free, nil, unix.Access(existing, unix.W_OK))
}

// existingAncestor is dir, or the nearest of its parents that exists.
func existingAncestor(dir string) string {
	dir = filepath.Clean(dir)
	for {
		if _, err := os.Stat(dir); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return dir
		}
		dir = parent
	}
}

// apiCheck tries the API address: a TCP address must accept a trial
// listen; a socket path must not have a live listener, as slicer up
// refuses to replace one.
func apiCheck(api config.API, socket string) Result {
	if socket != "" {
		st, err := socketAt(socket)
		return apiSocketResult(socket, st, err)
	}
	addr := net.JoinHostPort(api.BindAddress, strconv.Itoa(api.Port))
	l, err := net.Listen("tcp", addr)
	if err == nil {
		l.Close()
	}
	return apiTCPResult(addr, err)
}

func socketAt(path string) (socketState, error) {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return socketAbsent, nil
	case err != nil:
		return socketAbsent, err
	case fi.Mode()&os.ModeSocket == 0:
		return socketNotSocket, nil
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		return socketStale, nil
	}
	c.Close()
	return socketLive, nil
}
