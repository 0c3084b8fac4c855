package main

import (
	"fmt"
	"log/slog"
	"os"
)

// secretsCmd is "slicer-agent secrets sync" (being built).
func secretsCmd(args []string, log *slog.Logger) int {
	fmt.Fprintln(os.Stderr, "slicer-agent secrets: not built yet")
	return 1
}
