package pid1

import "strings"

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
