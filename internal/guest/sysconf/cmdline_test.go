package sysconf

import (
	"testing"
)

func TestKernelParam(t *testing.T) {
	tests := []struct {
		cmdline, key, want string
		found              bool
	}{
		{"console=ttyS0 slicer.hostname=vm-1 quiet\n", hostnameParam, "vm-1", true},
		{"slicer.hostname=a slicer.hostname=b", hostnameParam, "b", true},
		{"slicer.hostname= quiet", hostnameParam, "", true},
		{"xslicer.hostname=a slicer.hostnamex=b", hostnameParam, "", false},
		{"quiet slicer.hostname", hostnameParam, "", false},
		{"", hostnameParam, "", false},
	}
	for _, tt := range tests {
		got, found := KernelParam(tt.cmdline, tt.key)
		if got != tt.want || found != tt.found {
			t.Errorf("KernelParam(%q, %q) = %q, %v; want %q, %v", tt.cmdline, tt.key, got, found, tt.want, tt.found)
		}
	}
}
