// Command slicer-agent is the OpenSlicer guest agent. Started by the kernel
// as PID 1 of the initramfs it is the guest's init (see internal/guest/pid1);
// otherwise it takes a subcommand:
//
//	slicer-agent version
//	slicer-agent serve [--device PATH]
//	slicer-agent service
//	slicer-agent upload check | finalise|abort --manifest PATH [--uid U] [--gid G]
//	slicer-agent secrets sync
//
// service is the agent as the systemd unit that PID 1 installs in an image
// that boots systemd, before handing PID 1 over to it: it answers the host
// on the agent channel and the control socket. serve answers the host on
// the agent channel without doing init's work,
// for development and tests: PATH is a virtio-serial port device or a unix
// socket to dial, and defaults to the port named "slicer.agent". upload
// assembles the chunks of a chunked copy (Slicer's CpToVMChunked); secrets
// sync asks the running agent to fetch this VM's secrets from the host
// again.
//
// Build it static: CGO_ENABLED=0 go build -ldflags='-s -w' ./cmd/slicer-agent
package main

import (
	"os"
)

func main() {
	os.Exit(run(os.Args[1:]))
}
