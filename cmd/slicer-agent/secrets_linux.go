package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/openslicer/openslicer/internal/guest"
)

// secretsCmd is "slicer-agent secrets sync": it asks the agent (PID 1) to
// pull this VM's secrets from the host into /run/slicer/secrets again, and
// says which it got.
func secretsCmd(args []string, log *slog.Logger) int {
	if len(args) != 1 || args[0] != "sync" {
		fmt.Fprintln(os.Stderr, "usage: slicer-agent secrets sync")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	names, err := guest.SyncSecrets(ctx, guest.ControlSocket)
	if err != nil {
		fmt.Fprintf(os.Stderr, "slicer-agent secrets sync: %v\n", err)
		return 1
	}
	printSynced(os.Stdout, names)
	return 0
}

// printSynced reports the secrets a sync left in the guest, e.g.
// "synced 2 secrets: a, b".
func printSynced(w io.Writer, names []string) {
	switch len(names) {
	case 0:
		fmt.Fprintln(w, "synced 0 secrets")
	case 1:
		fmt.Fprintf(w, "synced 1 secret: %s\n", names[0])
	default:
		fmt.Fprintf(w, "synced %d secrets: %s\n", len(names), strings.Join(names, ", "))
	}
}
