package image

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/openslicer/openslicer/internal/imageref"
)

// BenchmarkPullBuild100MB pulls an image of about 100 MB (three layers,
// 1200 files of random bytes, which gzip cannot shrink) from an in-process
// registry on loopback with basic auth, into an empty cache each time, and
// builds its ext4 base: download, verify, unpack, mkfs.ext4.
func BenchmarkPullBuild100MB(b *testing.B) {
	requireE2fs(b)
	host := authRegistry(b)
	rnd := rand.New(rand.NewSource(1))
	var layers [][]byte
	for l := 0; l < 3; l++ {
		es := []tent{tdir(fmt.Sprintf("l%d/", l))}
		for i := 0; i < 400; i++ {
			body := make([]byte, 84<<10)
			rnd.Read(body)
			es = append(es, tfile(fmt.Sprintf("l%d/f%03d", l, i), string(body)))
		}
		layers = append(layers, layerTar(b, es...))
	}
	img := testImage(b, layers...)
	ref, _ := name.ParseReference(host + "/bench/big:v1")
	if err := remote.Write(ref, img, remote.WithAuth(&authn.Basic{Username: "user", Password: "pass"})); err != nil {
		b.Fatal(err)
	}
	var total int64
	for _, l := range layers {
		total += int64(len(l))
	}
	b.SetBytes(total)
	src, _ := imageref.Parse(host+"/bench/big:v1", false)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s := &Store{Dir: filepath.Join(b.TempDir(), "oci")}
		if _, err := s.Pull(context.Background(), src.String(), src); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(total)/1e6, "MB-layers")
}

// BenchmarkClone makes VM disks of 4 GiB from one base, as the daemon
// does on QEMU (qcow2) and as a full sparse copy, and reports the disk
// space each disk uses. SLICER_BENCH_BASE names a real base (e.g. the
// min image's rootfs.ext4); otherwise a small one is built.
func BenchmarkClone(b *testing.B) {
	for _, tt := range []struct {
		name  string
		qcow2 bool
	}{{"qcow2", true}, {"copy", false}} {
		b.Run(tt.name, func(b *testing.B) {
			dir := b.TempDir()
			base := smallExt4(b, dir)
			if real := os.Getenv("SLICER_BENCH_BASE"); real != "" {
				base = filepath.Join(dir, "base.ext4")
				if err := Clone(context.Background(), real, base, 0); err != nil {
					b.Fatal(err)
				}
			}
			c := &Cloner{Qcow2: tt.qcow2}
			disks := filepath.Join(dir, "disks")
			os.Mkdir(disks, 0o755)
			// The first clone of a base and size makes the grow layer:
			// timed apart, and its bytes counted below.
			start := time.Now()
			warm := filepath.Join(dir, "warm.img")
			if _, err := c.Clone(context.Background(), base, warm, 4<<30); err != nil {
				b.Fatal(err)
			}
			first := time.Since(start)
			os.Remove(warm)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := c.Clone(context.Background(), base, filepath.Join(disks, fmt.Sprintf("vm-%d.img", i)), 4<<30); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			grow := int64(0)
			layers, _ := filepath.Glob(filepath.Join(dir, "grow-*.qcow2"))
			for _, l := range layers {
				st, _ := os.Stat(l)
				grow += allocatedBytes(st)
			}
			b.ReportMetric(float64(duBytes(disks)+grow)/float64(b.N), "disk-bytes/clone")
			b.ReportMetric(float64(grow), "grow-layer-bytes")
			b.ReportMetric(float64(first.Milliseconds()), "first-clone-ms")
		})
	}
}

// BenchmarkFreeze times a commit's disk work (Freeze) of a 1 GiB VM disk
// made from one base, qcow2 (a rename and a new overlay) and raw (a copy:
// a reflink where the file system can share blocks, else a sparse copy
// of every block the disk holds), and then a fork's disk over the layer
// (Overlay). It reports the bytes each layer and fork disk takes.
// SLICER_BENCH_BASE names a real base (e.g. the min image's rootfs.ext4);
// otherwise a small one is built.
func BenchmarkFreeze(b *testing.B) {
	for _, tt := range []struct {
		name  string
		qcow2 bool
	}{{"qcow2", true}, {"raw", false}} {
		b.Run(tt.name, func(b *testing.B) {
			if tt.qcow2 {
				if _, err := lookTool("qemu-img", "qemu-utils"); err != nil {
					b.Skip(err)
				}
			}
			dir := b.TempDir()
			base := smallExt4(b, dir)
			if real := os.Getenv("SLICER_BENCH_BASE"); real != "" {
				base = filepath.Join(dir, "base.ext4")
				if err := Clone(context.Background(), real, base, 0); err != nil {
					b.Fatal(err)
				}
			}
			c, l := &Cloner{Qcow2: tt.qcow2}, &DiskLayers{}
			var layerBytes, forkBytes int64
			var overlay time.Duration
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				disk := filepath.Join(dir, fmt.Sprintf("vm-%d.img", i))
				format, err := c.Clone(context.Background(), base, disk, 1<<30)
				if err != nil {
					b.Fatal(err)
				}
				layer := filepath.Join(dir, "commits", fmt.Sprint(i), "disk")
				b.StartTimer()
				if err := l.Freeze(context.Background(), disk, format, layer); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				start := time.Now()
				fork := filepath.Join(dir, fmt.Sprintf("fork-%d.img", i))
				if _, err := l.Overlay(context.Background(), layer, format, fork); err != nil {
					b.Fatal(err)
				}
				overlay += time.Since(start)
				for p, sum := range map[string]*int64{layer: &layerBytes, fork: &forkBytes} {
					st, _ := os.Stat(p)
					*sum += allocatedBytes(st)
				}
				os.Remove(fork)
				os.Remove(disk)
				l.Drop(layer)
				b.StartTimer()
			}
			b.ReportMetric(float64(layerBytes)/float64(b.N), "layer-bytes")
			b.ReportMetric(float64(forkBytes)/float64(b.N), "fork-disk-bytes")
			b.ReportMetric(float64(overlay.Microseconds())/1000/float64(b.N), "fork-disk-ms")
		})
	}
}
