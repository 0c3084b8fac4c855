package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/openslicer/openslicer/internal/agent"
)

// uploadCmd is "slicer-agent upload check|finalise|abort", the guest half
// of the SDK's chunked copies (see agent.RunUpload).
func uploadCmd(args []string, log *slog.Logger) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return agent.RunUpload(ctx, log, args, os.Stdout, os.Stderr)
}
