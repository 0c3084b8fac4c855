//go:build !linux

package cli

import (
	"errors"
	"os"
)

// makeRaw is only implemented on Linux; elsewhere the terminal stays
// cooked.
func makeRaw(*os.File) (func(), error) {
	return nil, errors.New("raw terminal mode is only supported on linux")
}

func termSize(*os.File) (cols, rows uint32, ok bool) { return 0, 0, false }

func notifyResize(chan<- os.Signal) func() { return func() {} }
