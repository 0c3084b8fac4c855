// Command slicer is the OpenSlicer daemon (`slicer up`) and the CLI that
// drives it over the REST API (every other subcommand).
package main

import (
	"os"

	"github.com/openslicer/openslicer/internal/cli"
	"github.com/openslicer/openslicer/internal/daemon"
)

// Set by -ldflags -X at build time.
var (
	version = "dev"
	commit  = ""
)

func main() {
	io := cli.IO{In: os.Stdin, Out: os.Stdout, Err: os.Stderr}
	root := cli.NewRoot(io)
	cli.SetBuild(root, version, commit)
	root.AddCommand(daemon.Commands(version, commit, io.Out, io.Err)...)
	if vm, _, err := root.Find([]string{"vm"}); err == nil && vm != root {
		vm.AddCommand(daemon.VMCommands(io.Out)...)
	}
	os.Exit(cli.Main(root, io))
}
