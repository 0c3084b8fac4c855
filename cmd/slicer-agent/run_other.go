//go:build !linux

package main

import (
	"fmt"
	"os"
)

func run([]string) int {
	fmt.Fprintln(os.Stderr, "slicer-agent runs inside Linux guests only")
	return 1
}
