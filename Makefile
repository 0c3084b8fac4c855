# OpenSlicer build, demo, tests and benchmarks. `make help` lists targets.
export PATH := /usr/local/go/bin:$(PATH)
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null)
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
BIN     := bin

.PHONY: help setup build demo test test-short bench fuzz clean

help:
	@echo "make demo   install deps, boot a sandbox, run a command in it, clean up"
	@echo "make test   install deps, run every test including VM end-to-end tests"
	@echo "make bench  boot and exec latency figures (docs/benchmarks.md)"
	@echo "make fuzz   run every fuzz target for FUZZTIME each (docs/fuzzing.md)"
	@echo "make build  build bin/slicer and bin/slicer-agent"

setup:
	@./scripts/setup.sh

build:
	go build -ldflags '$(LDFLAGS)' -o $(BIN)/slicer ./cmd/slicer
	CGO_ENABLED=0 go build -ldflags '$(LDFLAGS) -X github.com/openslicer/openslicer/internal/guest.Version=$(VERSION)' -o $(BIN)/slicer-agent ./cmd/slicer-agent

demo: setup build
	./scripts/demo.sh

# Everything: unit tests, privileged tests, and end-to-end tests that boot
# real VMs under QEMU (TCG here). Plain `go test ./...` skips the latter.
# The QEMU backend's boot tests use the min image's kernel (SLICER_TEST_KERNEL).
IMAGES ?= /var/lib/slicer/images
test: setup build
	go vet ./...
	./bin/slicer image build --image-dir $(IMAGES)
	SLICER_E2E=1 SLICER_TEST_KERNEL=$$(ls -t $(IMAGES)/min-*/vmlinuz | head -1) go test -count=1 -timeout 45m ./...

test-short:
	go test ./...

bench: setup build
	go run ./cmd/slicer-bench

# Every native fuzz target, one after the other, FUZZTIME each (default 3m);
# FUZZ=regexp picks targets. Plain `go test` already runs their seeds.
fuzz:
	FUZZTIME=$(or $(FUZZTIME),3m) ./scripts/fuzz.sh

clean:
	rm -rf $(BIN)
