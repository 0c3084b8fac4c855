package vm_test

import (
	"testing"

	"github.com/openslicer/openslicer/internal/hypervisor"
	"github.com/openslicer/openslicer/internal/hypervisor/qemu"
	"github.com/openslicer/openslicer/internal/vm"
)

// TestQEMUKernelCmdlineUnchanged: the kernel command line a QEMU guest
// gets, now that the machine's arguments belong to the backend and the vm
// core passes only the guest's, is byte for byte the one the daemon built
// before (the wants below were printed by the code before the move).
func TestQEMUKernelCmdlineUnchanged(t *testing.T) {
	const before = "console=ttyS0 reboot=t panic=-1 quiet mitigations=off tsc=reliable no_timer_check " +
		"i8042.noaux i8042.nokbd i8042.nopnp i8042.dumbkbd pci=off random.trust_cpu=on 8250.nr_uarts=1 " +
		"cryptomgr.notests audit=0 nowatchdog noreplace-smp"
	const ip = "ip=10.0.0.3::10.0.0.1:255.255.255.0:sbox-1:eth0:off:10.0.0.1"
	tcg, kvm := qemu.Accel{TSCkHz: 2096035}, qemu.Accel{KVM: true, TSCkHz: 2096035}
	tests := []struct {
		name, kernelArgs, network string
		accel                     qemu.Accel
		want                      string
	}{
		{"tcg", "", "", tcg, before + " slicer.hostname=sbox-1 tsc_early_khz=2096035"},
		{"kvm", "", "", kvm, before + " slicer.hostname=sbox-1"},
		{"kernel_args", "  console=ttyS1 panic=0 ", "", tcg, before + " slicer.hostname=sbox-1 console=ttyS1 panic=0 tsc_early_khz=2096035"},
		{"kernel_args and network", "foo=bar", ip, tcg, before + " slicer.hostname=sbox-1 foo=bar " + ip + " tsc_early_khz=2096035"},
		{"network under kvm", "", ip, qemu.Accel{KVM: true}, before + " slicer.hostname=sbox-1 " + ip},
		{"kernel_args set tsc_early_khz", "tsc_early_khz=1000", "", tcg, before + " slicer.hostname=sbox-1 tsc_early_khz=1000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := hypervisor.Spec{
				Name: "sbox-1", VCPUs: 1, MemoryBytes: 256 << 20, Kernel: "/k/vmlinuz", RunDir: "/run/sbox-1",
				Cmdline: vm.GuestCmdline("sbox-1", "", tt.kernelArgs, tt.network),
			}
			args, err := qemu.Args(spec, tt.accel)
			if err != nil {
				t.Fatal(err)
			}
			got := ""
			for i := 0; i+1 < len(args); i++ {
				if args[i] == "-append" {
					got = args[i+1]
				}
			}
			if got != tt.want {
				t.Errorf("kernel command line\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}
