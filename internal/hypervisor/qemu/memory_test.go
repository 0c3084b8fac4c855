package qemu

import (
	"strings"
	"testing"

	"github.com/openslicer/openslicer/internal/hypervisor"
)

// TestArgsMemoryFile: a machine with a memory file runs with its RAM in
// that file mapped shared, under the id microvm gives its RAM, and the
// file is read back from the command line (what Capture looks at); a
// clone maps the captured file privately; every restore loads its stream through
// QMP (-incoming defer); a plain machine has neither.
func TestArgsMemoryFile(t *testing.T) {
	tests := []struct {
		name         string
		memFile      string
		l            load
		wantObject   string // "" for no memory-backend-file
		wantIncoming string
		wantShared   string
	}{
		{"plain", "", load{}, "", "", ""},
		{"template source", "/t/mem,1", load{},
			"memory-backend-file,id=microvm.ram,size=512M,mem-path=/t/mem,,1,share=on", "", "/t/mem,1"},
		{"clone", "", load{stream: "/t/vm.migration", memory: "/t/memory"},
			"memory-backend-file,id=microvm.ram,size=512M,mem-path=/t/memory,share=off", "defer", ""},
		{"suspended", "", load{stream: "/s/vm.migration"}, "", "defer", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := baseSpec()
			spec.MemoryFile = tt.memFile
			a, err := args(spec, Accel{}, tt.l)
			if err != nil {
				t.Fatal(err)
			}
			object, incoming, machine := argAfter(a, "-object", "memory-backend-file"), argAfter(a, "-incoming", ""), argAfter(a, "-M", "")
			if object != tt.wantObject {
				t.Errorf("memory object %q, want %q", object, tt.wantObject)
			}
			if incoming != tt.wantIncoming {
				t.Errorf("-incoming %q, want %q", incoming, tt.wantIncoming)
			}
			if hasBackend := strings.Contains(machine, "memory-backend=microvm.ram"); hasBackend != (tt.wantObject != "") {
				t.Errorf("-M %q: names the memory backend %v, want %v", machine, hasBackend, tt.wantObject != "")
			}
			if got, memfd := sharedRAMFromArgs(a); got != tt.wantShared || memfd {
				t.Errorf("sharedRAMFromArgs = %q, %t; want %q and no memfd", got, memfd, tt.wantShared)
			}
		})
	}
}

// argAfter returns the value of the first flag whose value starts with
// prefix, or "".
func argAfter(args []string, flag, prefix string) string {
	for i := range args {
		if args[i] == flag && i+1 < len(args) && strings.HasPrefix(args[i+1], prefix) {
			return args[i+1]
		}
	}
	return ""
}

// TestArgsMemoryFileInvalid: a memory file must be an absolute path, and
// a restore cannot have one (its memory is the state's).
func TestArgsMemoryFileInvalid(t *testing.T) {
	for _, edit := range []func(*hypervisor.Spec){
		func(s *hypervisor.Spec) { s.MemoryFile = "relative/mem" },
		func(s *hypervisor.Spec) { s.MemoryFile, s.RestoreFrom = "/m", "/state" },
	} {
		spec := baseSpec()
		edit(&spec)
		if _, err := Args(spec, Accel{}); err == nil {
			t.Errorf("Args(%+v) accepted", spec)
		}
	}
}

// TestArgsSharedMemory: a machine with shared memory has its RAM in a
// memfd mapped shared, under microvm's RAM id, which the command line
// says (what Capture looks at); a clone of its capture maps the captured
// file privately instead.
func TestArgsSharedMemory(t *testing.T) {
	spec := baseSpec()
	spec.SharedMemory = true
	a, err := args(spec, Accel{}, load{})
	if err != nil {
		t.Fatal(err)
	}
	if got := argAfter(a, "-object", "memory-backend-memfd"); got != "memory-backend-memfd,id=microvm.ram,size=512M,share=on" {
		t.Errorf("-object %q", got)
	}
	if m := argAfter(a, "-M", ""); !strings.Contains(m, "memory-backend=microvm.ram") {
		t.Errorf("-M %q does not name the memory backend", m)
	}
	if file, memfd := sharedRAMFromArgs(a); !memfd || file != "" {
		t.Errorf("sharedRAMFromArgs = %q, %t: want the memfd and no file", file, memfd)
	}
	clone, err := args(spec, Accel{}, load{stream: "/c/vm.migration", memory: "/c/memory"})
	if err != nil {
		t.Fatal(err)
	}
	if got := argAfter(clone, "-object", "memory-backend"); got != "memory-backend-file,id=microvm.ram,size=512M,mem-path=/c/memory,share=off" {
		t.Errorf("clone -object %q: want the captured file mapped privately", got)
	}
	if file, memfd := sharedRAMFromArgs(clone); file != "" || memfd {
		t.Errorf("clone: sharedRAMFromArgs = %q, %t: want neither (its RAM is private)", file, memfd)
	}
	spec.MemoryFile = "/t/mem"
	if _, err := args(spec, Accel{}, load{}); err == nil {
		t.Error("shared memory with a memory file: accepted")
	}
}
