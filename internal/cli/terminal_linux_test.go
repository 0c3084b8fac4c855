package cli

import (
	"os"
	"testing"
)

func TestIsTerminal(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if isTerminal(r) {
		t.Error("isTerminal(pipe) = true, want false")
	}
	o := &execOptions{globals: &globals{io: IO{In: r}}}
	if o.stdin() == nil {
		t.Error("stdin() of a pipe = nil, want the pipe")
	}

	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal to test with: %v", err)
	}
	defer ptmx.Close()
	if !isTerminal(ptmx) {
		t.Error("isTerminal(/dev/ptmx) = false, want true")
	}
	o.io.In = ptmx
	if o.stdin() != nil {
		t.Error("stdin() of a terminal != nil, want nil")
	}
}
