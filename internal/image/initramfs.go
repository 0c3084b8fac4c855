package image

import (
	"bufio"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// loadOrderPath is where the guest init finds the modules to insmod, one
// absolute path per line, each after the modules it depends on.
const loadOrderPath = "lib/modules/load.order"

// initramfsEntries plans the initramfs: the agent as /init, the modules
// (host paths, in load order) under /lib/modules with their load order, the
// mount points init uses, and /dev/console so the kernel can open a console
// for init before devtmpfs is mounted.
func initramfsEntries(agent string, modules []string) []entry {
	es := []entry{
		dirEntry("dev", 0o755),
		{Path: "dev/console", Mode: fs.ModeDevice | fs.ModeCharDevice | 0o600, Major: 5, Minor: 1},
		dirEntry("proc", 0o555),
		dirEntry("sys", 0o555),
		dirEntry("newroot", 0o755),
		dirEntry("lib", 0o755),
		dirEntry("lib/modules", 0o755),
		copyEntry("init", 0o755, agent),
	}
	var order strings.Builder
	for _, m := range modules {
		p := "lib/modules/" + moduleName(m) + ".ko"
		es = append(es, copyEntry(p, 0o644, m))
		fmt.Fprintf(&order, "/%s\n", p)
	}
	return append(es, fileEntry(loadOrderPath, 0o644, order.String()))
}

// writeInitramfs writes es as an uncompressed cpio archive at path, which
// the kernel unpacks without a decompressor.
func writeInitramfs(path string, es []entry) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	err = writeCPIO(w, es)
	if err == nil {
		err = w.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write initramfs %s: %w", path, err)
	}
	return nil
}
