//go:build !linux

package daemon

import "os"

// isTerminal is false off Linux: progress is printed as lines.
func isTerminal(f *os.File) bool { return false }
