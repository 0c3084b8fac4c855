package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/openslicer/openslicer/internal/agent/channel"
	"github.com/openslicer/openslicer/internal/guest"
	"github.com/openslicer/openslicer/internal/guest/pid1"
)

func run(args []string) int {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if os.Getpid() == 1 {
		pid1.Run(context.Background(), log) // never returns
	}
	if len(args) == 0 {
		usage(os.Stderr)
		return 2
	}
	switch args[0] {
	case "version":
		fmt.Println(guest.Version)
		return 0
	case "serve":
		return serve(args[1:], log)
	case "service":
		return service(args[1:], log)
	case "upload":
		return uploadCmd(args[1:], log)
	case "secrets":
		return secretsCmd(args[1:], log)
	case "help", "-h", "--help":
		usage(os.Stdout)
		return 0
	}
	fmt.Fprintf(os.Stderr, "slicer-agent: unknown command %q\n", args[0])
	usage(os.Stderr)
	return 2
}

func serve(args []string, log *slog.Logger) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	device := fs.String("device", "", `agent channel: a virtio-serial port device or a unix socket (default: the port named "`+channel.PortName+`")`)
	debug := fs.Bool("debug", false, "log at debug level")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "slicer-agent serve: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if *debug {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := guest.NewServer(log).ServeDevice(ctx, *device)
	if err != nil && !errors.Is(err, context.Canceled) {
		log.Error("serve", "err", err)
		return 1
	}
	return 0
}

// service is "slicer-agent service": the agent as the systemd unit PID 1
// installed before it handed PID 1 to systemd (see internal/guest/pid1).
func service(args []string, log *slog.Logger) int {
	if len(args) > 0 {
		fmt.Fprintf(os.Stderr, "slicer-agent service: unexpected argument %q\n", args[0])
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := pid1.Service(ctx, log)
	if err != nil && ctx.Err() == nil {
		log.Error("service", "err", err)
		return 1
	}
	return 0
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage:
  slicer-agent version
  slicer-agent serve [--device PATH] [--debug]
  slicer-agent service
  slicer-agent upload check
  slicer-agent upload finalise|abort --manifest PATH [--uid UID] [--gid GID]
  slicer-agent secrets sync

As PID 1 (the initramfs /init) slicer-agent is the guest's init; service is
the agent under systemd, after PID 1 handed over to it.
`)
}
