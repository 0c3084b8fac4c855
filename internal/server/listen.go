package server

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
)

// Listen opens the API listener: a unix socket at bindAddress when unix is
// set (mode 0660; a stale socket file is replaced), TCP otherwise.
func Listen(bindAddress string, port int, unix bool) (net.Listener, error) {
	if unix {
		if err := os.MkdirAll(filepath.Dir(bindAddress), 0o755); err != nil {
			return nil, fmt.Errorf("listen on %s: %w", bindAddress, err)
		}
		if err := removeStaleSocket(bindAddress); err != nil {
			return nil, err
		}
		l, err := net.Listen("unix", bindAddress)
		if err != nil {
			return nil, fmt.Errorf("listen on %s: %w", bindAddress, err)
		}
		if err := os.Chmod(bindAddress, 0o660); err != nil {
			l.Close()
			return nil, fmt.Errorf("listen on %s: %w", bindAddress, err)
		}
		return l, nil
	}
	addr := net.JoinHostPort(bindAddress, strconv.Itoa(port))
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	return l, nil
}

// removeStaleSocket removes a socket file nobody is listening on, and
// refuses to replace a live one or a file that is not a socket.
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("listen on %s: file exists and is not a socket", path)
	}
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		return fmt.Errorf("listen on %s: another daemon is listening there", path)
	}
	return os.Remove(path)
}
