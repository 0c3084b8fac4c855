package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/openslicer/openslicer/internal/guest"
)

// uploadCmd is "slicer-agent upload check|finalise|abort", the guest half
// of the SDK's chunked copies (see guest.RunUpload).
func uploadCmd(args []string, log *slog.Logger) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return guest.RunUpload(ctx, log, args, os.Stdout, os.Stderr)
}
