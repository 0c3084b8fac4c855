package guest

import "strings"

// hostnameParam is the kernel command line parameter that names the guest.
const hostnameParam = "slicer.hostname"

// kernelParam returns the value of key=value in a kernel command line (the
// contents of /proc/cmdline); the last occurrence wins, as in the kernel.
// Quoting is not supported: the daemon never writes values with spaces.
func kernelParam(cmdline, key string) (string, bool) {
	val, found := "", false
	for _, f := range strings.Fields(cmdline) {
		if k, v, ok := strings.Cut(f, "="); ok && k == key {
			val, found = v, true
		}
	}
	return val, found
}

// parseLoadOrder returns the module paths of a load.order file: one absolute
// path per line, in the order they must be loaded. Blank lines and comments
// are skipped.
func parseLoadOrder(data string) []string {
	var paths []string
	for _, line := range strings.Split(data, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		paths = append(paths, line)
	}
	return paths
}
