package qemu

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/openslicer/openslicer/internal/hypervisor"
)

// A running machine's disks are not always the files its command line
// names: a memory commit (Capture with Overlays) moves a disk's writes
// onto a new qcow2 overlay (layerDisks), and QEMU writes there until it
// exits, while /proc still shows the -drive it started with. A save
// (Suspend, Capture) therefore takes the disks of the shape it records
// from QEMU (query-block: the active image of each device disk<i>) and
// everything else from the command line (shapeFromArgs).

// blockInfo is the part of one entry of QMP query-block's answer that
// names a device's active image (QEMU 7.2; see testdata/query-block-*).
type blockInfo struct {
	Device   string `json:"device"`
	Inserted *struct {
		File  string `json:"file"`
		Drv   string `json:"drv"`
		Image struct {
			Filename string `json:"filename"`
			Format   string `json:"format"`
		} `json:"image"`
	} `json:"inserted"`
}

// liveDisks returns disks, a machine's disks as its command line names
// them, each with the path and format of the image QEMU's query-block
// answer ret says its device (disk<i>, as diskArgs names it) reads and
// writes now: an overlay once a capture layered it. Whether a disk is
// read-only stays the command line's.
func liveDisks(disks []hypervisor.Disk, ret json.RawMessage) ([]hypervisor.Disk, error) {
	var infos []blockInfo
	if err := json.Unmarshal(ret, &infos); err != nil {
		return nil, fmt.Errorf("decode query-block answer: %w", err)
	}
	found := make([]bool, len(disks))
	out := append([]hypervisor.Disk(nil), disks...)
	for _, b := range infos {
		i, ok := diskIndex(b.Device)
		if !ok {
			continue // not one of ours
		}
		if i >= len(disks) {
			return nil, fmt.Errorf("query-block names %s, but the command line has %d disks", b.Device, len(disks))
		}
		if b.Inserted == nil {
			return nil, fmt.Errorf("query-block: %s has no image", b.Device)
		}
		path := firstNonEmpty(b.Inserted.Image.Filename, b.Inserted.File)
		format := firstNonEmpty(b.Inserted.Image.Format, b.Inserted.Drv)
		switch {
		case path == "" || format == "":
			return nil, fmt.Errorf("query-block: %s has no file name or format", b.Device)
		case strings.HasPrefix(path, "json:") || !strings.HasPrefix(path, "/"):
			// QEMU's name for a node that is not one plain file.
			return nil, fmt.Errorf("query-block: %s reads %q, not a file by its absolute path", b.Device, path)
		}
		out[i].Path, out[i].Format = path, format
		found[i] = true
	}
	for i, ok := range found {
		if !ok {
			return nil, fmt.Errorf("query-block has no disk%d", i)
		}
	}
	return out, nil
}

// diskIndex returns i for the device name disk<i>.
func diskIndex(device string) (int, bool) {
	n, ok := strings.CutPrefix(device, "disk")
	if !ok || n == "" || strings.TrimLeft(n, "0123456789") != "" || len(n) > 1 && n[0] == '0' {
		return 0, false
	}
	i, err := strconv.Atoi(n)
	return i, err == nil
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
