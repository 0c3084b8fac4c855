package image

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestCPIOHeaderBytes(t *testing.T) {
	h := cpioHeader{Ino: 1, Mode: 0o100755, UID: 0, GID: 1000, Nlink: 1, FileSize: 0x1234, RdevMajor: 5, RdevMinor: 1, NameSize: 5}
	got := string(h.marshal())
	want := "070701" + "00000001" + "000081ed" + "00000000" + "000003e8" + "00000001" + "00000000" +
		"00001234" + "00000000" + "00000000" + "00000005" + "00000001" + "00000005" + "00000000"
	if got != want {
		t.Errorf("marshal() =\n%q\nwant\n%q", got, want)
	}
	if len(got) != cpioHdrLen {
		t.Errorf("len(marshal()) = %d, want %d", len(got), cpioHdrLen)
	}
}

func TestWriteCPIOLayout(t *testing.T) {
	// One file "ab" with 3 bytes: header(110) + "ab\0" (113) padded to 116,
	// data 3 padded to 4; then the trailer: 110 + 11 = 121 padded to 124.
	var buf bytes.Buffer
	if err := writeCPIO(&buf, []entry{fileEntry("ab", 0o644, "xyz")}); err != nil {
		t.Fatalf("writeCPIO() = %v", err)
	}
	b := buf.Bytes()
	if got, want := len(b), 116+4+124; got != want {
		t.Fatalf("archive is %d bytes, want %d", got, want)
	}
	if got := string(b[110:116]); got != "ab\x00\x00\x00\x00" {
		t.Errorf("name field = %q", got)
	}
	if got := string(b[116:120]); got != "xyz\x00" {
		t.Errorf("data field = %q", got)
	}
	if got := string(b[120+110 : 120+110+10]); got != cpioTrailer {
		t.Errorf("trailer name = %q", got)
	}
	for _, off := range []int{0, 120} {
		if got := string(b[off : off+6]); got != cpioMagic {
			t.Errorf("magic at %d = %q, want %q", off, got, cpioMagic)
		}
	}
}

func TestUnixMode(t *testing.T) {
	tests := []struct {
		in   fs.FileMode
		want uint32
	}{
		{0o644, 0o100644},
		{fs.ModeDir | 0o755, 0o040755},
		{fs.ModeDir | fs.ModeSticky | 0o777, 0o041777},
		{fs.ModeSymlink | 0o777, 0o120777},
		{fs.ModeDevice | fs.ModeCharDevice | 0o600, 0o020600},
		{fs.ModeSetuid | 0o755, 0o104755},
		{fs.ModeNamedPipe | 0o644, 0o010644},
	}
	for _, tt := range tests {
		got, err := unixMode(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("unixMode(%v) = %o, %v; want %o", tt.in, got, err, tt.want)
		}
	}
	if _, err := unixMode(fs.ModeSocket); err == nil {
		t.Errorf("unixMode(socket) = nil error, want one")
	}
}

// TestCPIORoundTrip reads an archive back with GNU cpio.
func TestCPIORoundTrip(t *testing.T) {
	cpio, err := exec.LookPath("cpio")
	if err != nil {
		t.Skip("cpio not installed")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	if err := os.WriteFile(src, []byte("from a host file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	es := []entry{
		dirEntry("dev", 0o755),
		{Path: "dev/console", Mode: fs.ModeDevice | fs.ModeCharDevice | 0o600, Major: 5, Minor: 1},
		dirEntry("lib", 0o755),
		copyEntry("init", 0o755, src),
		fileEntry("lib/odd", 0o644, "12345"),
		symlinkEntry("lib/link", "/init"),
	}
	var buf bytes.Buffer
	if err := writeCPIO(&buf, es); err != nil {
		t.Fatalf("writeCPIO() = %v", err)
	}
	archive := filepath.Join(dir, "a.cpio")
	if err := os.WriteFile(archive, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}

	out, err := exec.Command("sh", "-c", cpio+" -t --quiet < "+archive).CombinedOutput()
	if err != nil {
		t.Fatalf("cpio -t: %v: %s", err, out)
	}
	want := []string{"dev", "dev/console", "lib", "init", "lib/odd", "lib/link"}
	if diff := cmp.Diff(want, strings.Fields(string(out))); diff != "" {
		t.Errorf("cpio -t names (-want +got):\n%s", diff)
	}

	out, err = exec.Command("sh", "-c", cpio+" -tv --quiet < "+archive).CombinedOutput()
	if err != nil {
		t.Fatalf("cpio -tv: %v: %s", err, out)
	}
	for _, w := range []string{"crw-------", "-rwxr-xr-x", "lib/link -> /init"} {
		if !strings.Contains(string(out), w) {
			t.Errorf("cpio -tv output lacks %q:\n%s", w, out)
		}
	}

	for name, want := range map[string]string{"init": "from a host file\n", "lib/odd": "12345"} {
		got, err := exec.Command("sh", "-c", cpio+" -i --quiet --to-stdout "+name+" < "+archive).Output()
		if err != nil || string(got) != want {
			t.Errorf("cpio -i --to-stdout %s = %q, %v; want %q", name, got, err, want)
		}
	}
}
