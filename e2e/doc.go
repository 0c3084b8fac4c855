// Package e2e holds end-to-end tests: they build the slicer and
// slicer-agent binaries, start real daemons, and boot real VMs under QEMU
// (TCG where there is no KVM) through the public client. They run only with
// SLICER_E2E=1 (`make test`); plain `go test ./...` skips them.
package e2e
