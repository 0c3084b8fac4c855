//go:build !linux

package cli

import "os"

// isTerminal reports whether f is a character device, which is as close
// to "a terminal" as this platform gets without an ioctl.
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
