package qemu

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/hypervisor"
)

func baseSpec() hypervisor.Spec {
	return hypervisor.Spec{
		ID:          "vm-1",
		Name:        "sbox-1",
		VCPUs:       2,
		MemoryBytes: 512 << 20,
		Kernel:      "/k/vmlinuz",
		Initrd:      "/k/initrd.img",
		Cmdline:     "slicer.hostname=sbox-1",
		Disks:       []hypervisor.Disk{{Path: "/d/root.img"}},
		RunDir:      "/run/slicer/vm-1",
		ConsoleLog:  "/var/log/slicer/sbox-1.txt",
	}
}

// machineArgs are the kernel arguments the backend puts in front of the
// guest's (bootArgs), spelled out.
const machineArgs = "console=ttyS0 reboot=t panic=-1 quiet mitigations=off tsc=reliable no_timer_check " +
	"i8042.noaux i8042.nokbd i8042.nopnp i8042.dumbkbd pci=off random.trust_cpu=on 8250.nr_uarts=1 " +
	"cryptomgr.notests audit=0 nowatchdog noreplace-smp"

func TestArgsFull(t *testing.T) {
	kvm := baseSpec()
	kvm.Initrd = ""
	kvm.Disks = []hypervisor.Disk{
		{Path: "/d/root.qcow2", Format: "qcow2"},
		{Path: "/d/seed.img", ReadOnly: true},
	}
	kvm.TAP, kvm.MAC = "tap-vm1", "52:54:00:12:34:56"
	// A restore is the same command line plus -incoming.
	restore := baseSpec()
	restore.RestoreFrom = "/var/lib/slicer/sbox-1.state"

	tests := []struct {
		name  string
		spec  hypervisor.Spec
		accel Accel
		want  []string
	}{{
		name:  "tcg with initrd and one disk",
		spec:  baseSpec(),
		accel: Accel{TSCkHz: 2096035},
		want: []string{
			"-name", "guest=sbox-1",
			"-M", "microvm,acpi=on",
			"-accel", "tcg,thread=multi", "-cpu", "max",
			"-m", "512", "-smp", "2",
			"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
			"-kernel", "/k/vmlinuz",
			"-initrd", "/k/initrd.img",
			"-append", machineArgs + " slicer.hostname=sbox-1 tsc_early_khz=2096035",
			"-chardev", "file,id=con0,append=on,path=/var/log/slicer/sbox-1.txt",
			"-serial", "chardev:con0",
			"-device", "virtio-serial-device",
			"-chardev", "socket,id=agent,server=on,wait=off,path=/run/slicer/vm-1/agent.sock",
			"-device", "virtserialport,chardev=agent,name=slicer.agent,id=agentport",
			"-drive", "if=none,id=disk0,format=raw,cache=writeback,aio=threads,discard=unmap,file=/d/root.img",
			"-device", "virtio-blk-device,drive=disk0",
			"-object", "rng-random,id=rng0,filename=/dev/urandom",
			"-device", "virtio-rng-device,rng=rng0",
			"-qmp", "unix:/run/slicer/vm-1/qmp.sock,server=on,wait=off",
			"-pidfile", "/run/slicer/vm-1/qemu.pid",
			"-daemonize",
		},
	}, {
		name:  "kvm without initrd, two disks and a nic",
		spec:  kvm,
		accel: Accel{KVM: true, TSCkHz: 2096035},
		want: []string{
			"-name", "guest=sbox-1",
			"-M", "microvm,acpi=on",
			"-accel", "kvm", "-cpu", "host",
			"-m", "512", "-smp", "2",
			"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
			"-kernel", "/k/vmlinuz",
			"-append", machineArgs + " slicer.hostname=sbox-1",
			"-chardev", "file,id=con0,append=on,path=/var/log/slicer/sbox-1.txt",
			"-serial", "chardev:con0",
			"-device", "virtio-serial-device",
			"-chardev", "socket,id=agent,server=on,wait=off,path=/run/slicer/vm-1/agent.sock",
			"-device", "virtserialport,chardev=agent,name=slicer.agent,id=agentport",
			"-drive", "if=none,id=disk0,format=qcow2,cache=writeback,aio=threads,discard=unmap,file=/d/root.qcow2",
			"-device", "virtio-blk-device,drive=disk0",
			"-drive", "if=none,id=disk1,format=raw,cache=writeback,aio=threads,readonly=on,file=/d/seed.img",
			"-device", "virtio-blk-device,drive=disk1",
			"-object", "rng-random,id=rng0,filename=/dev/urandom",
			"-device", "virtio-rng-device,rng=rng0",
			"-netdev", "tap,id=net0,script=no,downscript=no,ifname=tap-vm1",
			"-device", "virtio-net-device,netdev=net0,mac=52:54:00:12:34:56",
			"-qmp", "unix:/run/slicer/vm-1/qmp.sock,server=on,wait=off",
			"-pidfile", "/run/slicer/vm-1/qemu.pid",
			"-daemonize",
		},
	}, {
		name:  "restore from a state file",
		spec:  restore,
		accel: Accel{TSCkHz: 2096035},
		want: []string{
			"-name", "guest=sbox-1",
			"-M", "microvm,acpi=on",
			"-accel", "tcg,thread=multi", "-cpu", "max",
			"-m", "512", "-smp", "2",
			"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
			"-kernel", "/k/vmlinuz",
			"-initrd", "/k/initrd.img",
			"-append", machineArgs + " slicer.hostname=sbox-1 tsc_early_khz=2096035",
			"-chardev", "file,id=con0,append=on,path=/var/log/slicer/sbox-1.txt",
			"-serial", "chardev:con0",
			"-device", "virtio-serial-device",
			"-chardev", "socket,id=agent,server=on,wait=off,path=/run/slicer/vm-1/agent.sock",
			"-device", "virtserialport,chardev=agent,name=slicer.agent,id=agentport",
			"-drive", "if=none,id=disk0,format=raw,cache=writeback,aio=threads,discard=unmap,file=/d/root.img",
			"-device", "virtio-blk-device,drive=disk0",
			"-object", "rng-random,id=rng0,filename=/dev/urandom",
			"-device", "virtio-rng-device,rng=rng0",
			"-incoming", "defer",
			"-qmp", "unix:/run/slicer/vm-1/qmp.sock,server=on,wait=off",
			"-pidfile", "/run/slicer/vm-1/qemu.pid",
			"-daemonize",
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Args(tt.spec, tt.accel)
			if err != nil {
				t.Fatalf("Args: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Args mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestArgsOptions checks single options: each want pair must appear as
// consecutive arguments, each absent flag must not appear.
func TestArgsOptions(t *testing.T) {
	tests := []struct {
		name   string
		edit   func(*hypervisor.Spec)
		accel  Accel
		want   [][2]string
		absent []string
	}{{
		name:   "no tap means no nic",
		absent: []string{"-netdev"},
	}, {
		name: "tap without mac lets qemu choose",
		edit: func(s *hypervisor.Spec) { s.TAP = "tap0" },
		want: [][2]string{
			{"-netdev", "tap,id=net0,script=no,downscript=no,ifname=tap0"},
			{"-device", "virtio-net-device,netdev=net0"},
		},
	}, {
		name: "an unlinked nic is on a hub port nothing else is on",
		edit: func(s *hypervisor.Spec) { s.UnlinkedNIC, s.MAC = true, "02:00:00:00:00:07" },
		want: [][2]string{
			{"-netdev", "hubport,id=net0,hubid=0"},
			{"-device", "virtio-net-device,netdev=net0,mac=02:00:00:00:00:07"},
		},
	}, {
		name: "empty console log goes to the run dir",
		edit: func(s *hypervisor.Spec) { s.ConsoleLog = "" },
		want: [][2]string{{"-chardev", "file,id=con0,append=on,path=/run/slicer/vm-1/console.log"}},
	}, {
		name: "commas in option values are doubled",
		edit: func(s *hypervisor.Spec) {
			s.Name = "a,b"
			s.RunDir = "/run/x,y"
			s.ConsoleLog = "/log/c,d.txt"
			s.Disks = []hypervisor.Disk{{Path: "/d/e,f.img"}}
		},
		want: [][2]string{
			{"-name", "guest=a,,b"},
			{"-chardev", "file,id=con0,append=on,path=/log/c,,d.txt"},
			{"-drive", "if=none,id=disk0,format=raw,cache=writeback,aio=threads,discard=unmap,file=/d/e,,f.img"},
			{"-chardev", "socket,id=agent,server=on,wait=off,path=/run/x,,y/agent.sock"},
			{"-qmp", "unix:/run/x,,y/qmp.sock,server=on,wait=off"},
			{"-pidfile", "/run/x,y/qemu.pid"}, // a plain string, not an option list
		},
	}, {
		name: "tcg with unknown tsc frequency adds no hint",
		want: [][2]string{{"-append", machineArgs + " slicer.hostname=sbox-1"}},
	}, {
		name:  "a tsc_early_khz from the guest's part wins",
		edit:  func(s *hypervisor.Spec) { s.Cmdline = "tsc_early_khz=1000000" },
		accel: Accel{TSCkHz: 2096035},
		want:  [][2]string{{"-append", machineArgs + " tsc_early_khz=1000000"}},
	}, {
		name:  "empty guest part gets the machine's arguments and the hint",
		edit:  func(s *hypervisor.Spec) { s.Cmdline = "" },
		accel: Accel{TSCkHz: 2096035},
		want:  [][2]string{{"-append", machineArgs + " tsc_early_khz=2096035"}},
	}, {
		// The stream is handed over QMP as a descriptor (awaitRestore): its
		// path is never on the command line, whatever it holds.
		name: "a restore waits for its stream",
		edit: func(s *hypervisor.Spec) { s.RestoreFrom = "/st/it's a,b $(x).state" },
		want: [][2]string{{"-incoming", "defer"}},
	}, {
		name:   "no incoming means a cold boot",
		absent: []string{"-incoming"},
	}, {
		name: "memory in MiB",
		edit: func(s *hypervisor.Spec) { s.MemoryBytes = 64 << 20 },
		want: [][2]string{{"-m", "64"}},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := baseSpec()
			if tt.edit != nil {
				tt.edit(&spec)
			}
			got, err := Args(spec, tt.accel)
			if err != nil {
				t.Fatalf("Args: %v", err)
			}
			for _, w := range tt.want {
				if !hasPair(got, w[0], w[1]) {
					t.Errorf("Args lacks %s %q; got %q", w[0], w[1], got)
				}
			}
			for _, a := range tt.absent {
				if slices.Contains(got, a) {
					t.Errorf("Args has %s; got %q", a, got)
				}
			}
		})
	}
}

func hasPair(args []string, flag, value string) bool {
	for i := 0; i+1 < len(args); i++ {
		if args[i] == flag && args[i+1] == value {
			return true
		}
	}
	return false
}

func TestArgsInvalid(t *testing.T) {
	long := "/" + strings.Repeat("r", 100)
	tests := []struct {
		name string
		edit func(*hypervisor.Spec)
		want []string // substrings of the error
	}{
		{"no vcpus", func(s *hypervisor.Spec) { s.VCPUs = 0 }, []string{"vcpus must be at least 1, got 0"}},
		{"too little memory", func(s *hypervisor.Spec) { s.MemoryBytes = 32 << 20 }, []string{"at least 64 MiB"}},
		{"memory not whole MiB", func(s *hypervisor.Spec) { s.MemoryBytes = 64<<20 + 1 }, []string{"whole number of MiB"}},
		{"no kernel", func(s *hypervisor.Spec) { s.Kernel = "" }, []string{"kernel is not set"}},
		{"relative run dir", func(s *hypervisor.Spec) { s.RunDir = "run/vm" }, []string{`run dir "run/vm" is not an absolute path`}},
		{"socket path too long", func(s *hypervisor.Spec) { s.RunDir = long }, []string{long + "/agent.sock is 112 bytes", long + "/qmp.sock"}},
		{"disk without path", func(s *hypervisor.Spec) { s.Disks = []hypervisor.Disk{{}} }, []string{"disk 0 has no path"}},
		{"unknown disk format", func(s *hypervisor.Spec) { s.Disks[0].Format = "vmdk" }, []string{`disk 0 format "vmdk"`}},
		{"long tap name", func(s *hypervisor.Spec) { s.TAP = "tap-0123456789abc" }, []string{"tap name"}},
		{"relative state directory", func(s *hypervisor.Spec) { s.RestoreFrom = "vm.state" }, []string{`state directory "vm.state" is not an absolute path`}},
		{"bad mac", func(s *hypervisor.Spec) { s.TAP, s.MAC = "tap0", "5254.0012.3456" }, []string{`mac "5254.0012.3456"`}},
		{"unlinked nic with a tap", func(s *hypervisor.Spec) { s.TAP, s.UnlinkedNIC = "tap0", true }, []string{`a NIC with a TAP ("tap0") is not unlinked`}},
		{"every problem at once", func(s *hypervisor.Spec) { s.VCPUs, s.Kernel = 0, "" }, []string{"vcpus", "kernel"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := baseSpec()
			tt.edit(&spec)
			_, err := Args(spec, Accel{})
			if err == nil {
				t.Fatal("Args: got nil error")
			}
			if !errors.Is(err, api.ErrInvalid) {
				t.Errorf("Args error %q is not api.ErrInvalid", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Args error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestOwnsCmdline(t *testing.T) {
	args, err := Args(baseSpec(), Accel{})
	if err != nil {
		t.Fatal(err)
	}
	ours := []byte("/usr/bin/qemu-system-x86_64\x00" + strings.Join(args, "\x00") + "\x00")
	tests := []struct {
		name    string
		cmdline []byte
		runDir  string
		want    bool
	}{
		{"our qemu", ours, "/run/slicer/vm-1", true},
		{"run dir given uncleaned", ours, "/run/slicer/vm-1/", true},
		{"another machine's qemu", ours, "/run/slicer/vm-10", false},
		{"a parent dir", ours, "/run/slicer", false},
		{"unrelated process", []byte("sleep\x00100\x00"), "/run/slicer/vm-1", false},
		{"path without -pidfile", []byte("cat\x00/run/slicer/vm-1/qemu.pid\x00"), "/run/slicer/vm-1", false},
		{"zombie (empty cmdline)", nil, "/run/slicer/vm-1", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ownsCmdline(tt.cmdline, tt.runDir); got != tt.want {
				t.Errorf("ownsCmdline(%q) = %v, want %v", tt.runDir, got, tt.want)
			}
		})
	}
}
