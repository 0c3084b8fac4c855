package main

import (
	"fmt"
	"log/slog"
	"os"
)

// uploadCmd is "slicer-agent upload check|finalise|abort" (being built).
func uploadCmd(args []string, log *slog.Logger) int {
	fmt.Fprintln(os.Stderr, "slicer-agent upload: not built yet")
	return 1
}
