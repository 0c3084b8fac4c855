package image

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// qemuIO runs qemu-io commands on a qcow2 or raw image and fails the test
// when one fails (qemu-io exits 0 then, so its output is checked).
func qemuIO(t *testing.T, image, format string, readOnly bool, cmds ...string) {
	t.Helper()
	args := []string{"-f", format}
	if readOnly {
		args = append(args, "-r")
	}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	out, err := exec.Command("qemu-io", append(args, image)...).CombinedOutput()
	if err != nil || strings.Contains(string(out), "failed") || strings.Contains(string(out), "error") {
		t.Fatalf("qemu-io %s %q: %v\n%s", image, cmds, err, out)
	}
}

// readsPattern checks that image holds byte pattern at the 64 KiB from off.
func readsPattern(t *testing.T, image, format string, off int, pattern byte) {
	t.Helper()
	qemuIO(t, image, format, true, readCmd(off, pattern))
}

func readCmd(off int, pattern byte) string {
	return "read -q -P " + strconv.Itoa(int(pattern)) + " " + strconv.Itoa(off) + " 64k"
}

func writeCmd(off int, pattern byte) string {
	return "write -q -P " + strconv.Itoa(int(pattern)) + " " + strconv.Itoa(off) + " 64k"
}

// backingChain is the backing files of image, nearest first, as qemu-img
// reads them.
func backingChain(t *testing.T, image string) []string {
	t.Helper()
	out, err := exec.Command("qemu-img", "info", "--backing-chain", "-U", image).CombinedOutput()
	if err != nil {
		t.Fatalf("qemu-img info %s: %v\n%s", image, err, out)
	}
	var chain []string
	for _, line := range strings.Split(string(out), "\n") {
		if b, ok := strings.CutPrefix(line, "backing file: "); ok {
			chain = append(chain, strings.Fields(b)[0])
		}
	}
	return chain
}

// layersEnv is an image with a qcow2 VM disk over it, as the daemon lays
// them out: <dir>/img (base, grow layer, users/), <dir>/disks, and
// <dir>/commits.
type layersEnv struct {
	dir, img, disk string
}

func newLayersEnv(t *testing.T) layersEnv {
	t.Helper()
	requireQemuImg(t)
	dir := t.TempDir()
	img := filepath.Join(dir, "img")
	os.MkdirAll(img, 0o755)
	os.MkdirAll(filepath.Join(dir, "disks"), 0o755)
	src := smallExt4(t, img)
	disk := filepath.Join(dir, "disks", "sbox-1.img")
	format, err := (&Cloner{Qcow2: true}).Clone(context.Background(), src, disk, 256<<20)
	if err != nil {
		t.Fatal(err)
	}
	if format != FormatQcow2 {
		t.Skip("this file system reflinks: VM disks are raw here")
	}
	return layersEnv{dir: dir, img: img, disk: disk}
}

func (e layersEnv) layer(id string) string {
	return filepath.Join(e.dir, "commits", id, "disk.qcow2")
}

// A commit layer over a qcow2 disk: the source keeps reading what it had
// and writes apart from the layer; forks over the layer see it, write
// apart from it and each other, and start thin; a fork can be committed in
// turn (a chain of layers). The image counts a layer over it as a user
// until the layer is dropped.
func TestLayersQcow2Chain(t *testing.T) {
	e := newLayersEnv(t)
	ctx := context.Background()
	l := &DiskLayers{}
	qemuIO(t, e.disk, FormatQcow2, false, writeCmd(1<<20, 0xaa))

	layer := e.layer("cmt-1")
	if err := l.Freeze(ctx, e.disk, FormatQcow2, layer); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(layer); err != nil || st.Mode().Perm() != 0o444 {
		t.Fatalf("layer %v, %v; want a read-only file", st, err)
	}
	if chain := backingChain(t, e.disk); len(chain) < 2 || chain[0] != layer {
		t.Fatalf("source disk's backing chain %v, want the layer first", chain)
	}
	readsPattern(t, e.disk, FormatQcow2, 1<<20, 0xaa)
	qemuIO(t, e.disk, FormatQcow2, false, writeCmd(1<<20, 0xbb))
	readsPattern(t, layer, FormatQcow2, 1<<20, 0xaa) // the layer kept its blocks

	var children []string
	for _, name := range []string{"sbox-2.img", "sbox-3.img"} {
		child := filepath.Join(e.dir, "disks", name)
		format, err := l.Overlay(ctx, layer, FormatQcow2, child)
		if err != nil || format != FormatQcow2 {
			t.Fatalf("Overlay = %q, %v", format, err)
		}
		if n := du(t, child); n > 1<<20 {
			t.Errorf("fork disk %s uses %d bytes, want a thin overlay", name, n)
		}
		readsPattern(t, child, FormatQcow2, 1<<20, 0xaa)
		children = append(children, child)
	}
	qemuIO(t, children[0], FormatQcow2, false, writeCmd(1<<20, 0xcc))
	readsPattern(t, children[1], FormatQcow2, 1<<20, 0xaa)
	readsPattern(t, layer, FormatQcow2, 1<<20, 0xaa)

	// The image is in use while the layer exists, its source gone or not.
	os.Remove(e.disk)
	if users, _ := DiskUsers(e.img); !slices.Contains(users, layer) {
		t.Errorf("DiskUsers = %v, want the layer %s", users, layer)
	}

	// A fork committed: its layer is over the first.
	layer2 := e.layer("cmt-2")
	if err := l.Freeze(ctx, children[0], FormatQcow2, layer2); err != nil {
		t.Fatal(err)
	}
	if chain := backingChain(t, layer2); len(chain) == 0 || chain[0] != layer {
		t.Errorf("second layer's backing chain %v, want the first layer", chain)
	}
	grand := filepath.Join(e.dir, "disks", "sbox-4.img")
	if _, err := l.Overlay(ctx, layer2, FormatQcow2, grand); err != nil {
		t.Fatal(err)
	}
	readsPattern(t, grand, FormatQcow2, 1<<20, 0xcc)
	if out, err := exec.Command("qemu-img", "check", "-U", grand).CombinedOutput(); err != nil {
		t.Errorf("qemu-img check: %v\n%s", err, out)
	}

	for _, p := range append(children, grand) {
		os.Remove(p)
	}
	if err := l.Drop(layer2); err != nil {
		t.Fatal(err)
	}
	if err := l.Drop(layer); err != nil {
		t.Fatal(err)
	}
	if err := l.Drop(layer); err != nil {
		t.Errorf("second Drop: %v", err)
	}
	if users, _ := DiskUsers(e.img); len(users) != 0 {
		t.Errorf("DiskUsers after the layers are dropped: %v", users)
	}
}

// Unfreeze puts the disk back as it was from whatever step a freeze
// reached, and again when run twice.
func TestUnfreezeAtEveryStep(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		reach func(t *testing.T, e layersEnv, layer string) // the step a crash cut the freeze at
	}{
		{"nothing done", func(t *testing.T, e layersEnv, layer string) {
			os.MkdirAll(filepath.Dir(layer), 0o755)
		}},
		{"copy to another file system begun", func(t *testing.T, e layersEnv, layer string) {
			os.MkdirAll(filepath.Dir(layer), 0o755)
			if err := Clone(ctx, e.disk, layer, 0); err != nil {
				t.Fatal(err)
			}
			os.WriteFile(layer+".tmp", []byte("half"), 0o644)
		}},
		{"disk moved to the layer", func(t *testing.T, e layersEnv, layer string) {
			os.MkdirAll(filepath.Dir(layer), 0o755)
			if err := os.Rename(e.disk, layer); err != nil {
				t.Fatal(err)
			}
			os.WriteFile(e.disk+".tmp", []byte("half an overlay"), 0o644)
		}},
		{"freeze complete", func(t *testing.T, e layersEnv, layer string) {
			if err := (&DiskLayers{}).Freeze(ctx, e.disk, FormatQcow2, layer); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newLayersEnv(t)
			qemuIO(t, e.disk, FormatQcow2, false, writeCmd(0, 0xaa))
			before := backingChain(t, e.disk)
			layer := e.layer("cmt-x")
			tc.reach(t, e, layer)
			l := &DiskLayers{}
			for range 2 {
				if err := l.Unfreeze(e.disk, FormatQcow2, layer); err != nil {
					t.Fatalf("Unfreeze: %v", err)
				}
			}
			if got := backingChain(t, e.disk); !slices.Equal(got, before) {
				t.Errorf("disk's backing chain %v, want %v as before", got, before)
			}
			readsPattern(t, e.disk, FormatQcow2, 0, 0xaa)
			qemuIO(t, e.disk, FormatQcow2, false, writeCmd(0, 0xbb)) // writable again
			for _, p := range []string{layer, layer + ".tmp", e.disk + ".tmp"} {
				if _, err := os.Stat(p); err == nil {
					t.Errorf("%s left", p)
				}
			}
			if users, _ := DiskUsers(e.img); !slices.Equal(users, []string{e.disk}) {
				t.Errorf("DiskUsers = %v, want the disk", users)
			}
		})
	}
}

// Raw disks share nothing: a layer is a copy (a reflink where the file
// system can), the disk is left as it is, and a fork's disk is a copy of
// the layer.
func TestLayersRaw(t *testing.T) {
	dir := t.TempDir()
	src := smallExt4(t, dir)
	disk := filepath.Join(dir, "sbox-1.img")
	if err := Clone(context.Background(), src, disk, 0); err != nil {
		t.Fatal(err)
	}
	requireQemuImg(t)
	qemuIO(t, disk, FormatRaw, false, writeCmd(0, 0xaa))
	l := &DiskLayers{}
	layer := filepath.Join(dir, "commits", "cmt-r", "disk.img")
	if err := l.Freeze(context.Background(), disk, FormatRaw, layer); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(layer); err != nil || st.Mode().Perm() != 0o444 {
		t.Fatalf("layer %v, %v", st, err)
	}
	qemuIO(t, disk, FormatRaw, false, writeCmd(0, 0xbb))
	readsPattern(t, layer, FormatRaw, 0, 0xaa)
	child := filepath.Join(dir, "sbox-2.img")
	if format, err := l.Overlay(context.Background(), layer, FormatRaw, child); err != nil || format != FormatRaw {
		t.Fatalf("Overlay = %q, %v", format, err)
	}
	readsPattern(t, child, FormatRaw, 0, 0xaa)
	qemuIO(t, child, FormatRaw, false, writeCmd(0, 0xcc))
	readsPattern(t, layer, FormatRaw, 0, 0xaa)
	if err := l.Unfreeze(disk, FormatRaw, layer); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(layer); err == nil {
		t.Error("raw layer left after Unfreeze")
	}
	readsPattern(t, disk, FormatRaw, 0, 0xbb)
}
