package image

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
)

// The initramfs is an uncompressed cpio archive in the "newc" format, the
// one the kernel unpacks (Documentation/driver-api/early-userspace). Each
// member is a 110-byte ASCII header, the NUL-terminated name padded to a
// multiple of four bytes, then the data padded the same way. The archive
// ends with a member named "TRAILER!!!".

const (
	cpioMagic   = "070701"
	cpioTrailer = "TRAILER!!!"
	cpioHdrLen  = 110
)

// cpioHeader is the numeric part of a newc header.
type cpioHeader struct {
	Ino, Mode, UID, GID, Nlink, Mtime uint32
	FileSize                          uint32
	DevMajor, DevMinor                uint32
	RdevMajor, RdevMinor              uint32
	NameSize                          uint32 // including the trailing NUL
}

// marshal renders h as the 110 header bytes.
func (h cpioHeader) marshal() []byte {
	s := fmt.Sprintf("%s%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		cpioMagic, h.Ino, h.Mode, h.UID, h.GID, h.Nlink, h.Mtime, h.FileSize,
		h.DevMajor, h.DevMinor, h.RdevMajor, h.RdevMinor, h.NameSize, 0)
	return []byte(s)
}

// pad4 is how many zero bytes bring n up to a multiple of four.
func pad4(n int) int { return (4 - n%4) % 4 }

// unixMode turns a Go file mode into st_mode bits (as cpio and ext4 store
// them).
func unixMode(m fs.FileMode) (uint32, error) {
	mode := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		mode |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		mode |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		mode |= 0o1000
	}
	switch {
	case m.IsDir():
		return mode | 0o040000, nil
	case m.IsRegular():
		return mode | 0o100000, nil
	case m&fs.ModeSymlink != 0:
		return mode | 0o120000, nil
	case m&fs.ModeCharDevice != 0:
		return mode | 0o020000, nil
	case m&fs.ModeDevice != 0:
		return mode | 0o060000, nil
	case m&fs.ModeNamedPipe != 0:
		return mode | 0o010000, nil
	}
	return 0, fmt.Errorf("file mode %v has no cpio equivalent", m)
}

// writeCPIO writes entries as a newc archive to w, in order, followed by the
// trailer. Times are zero and owners come from the entries, so the archive
// depends only on its contents.
func writeCPIO(w io.Writer, entries []entry) error {
	for i, e := range entries {
		if err := writeCPIOEntry(w, uint32(i+1), e); err != nil {
			return fmt.Errorf("cpio member %q: %w", e.Path, err)
		}
	}
	return writeCPIOMember(w, cpioHeader{Nlink: 1}, cpioTrailer, nil, 0)
}

func writeCPIOEntry(w io.Writer, ino uint32, e entry) error {
	mode, err := unixMode(e.Mode)
	if err != nil {
		return err
	}
	h := cpioHeader{Ino: ino, Mode: mode, UID: uint32(e.UID), GID: uint32(e.GID), Nlink: 1}
	var data io.Reader
	var size int64
	switch {
	case e.Mode.IsDir():
		h.Nlink = 2
	case e.Mode&fs.ModeSymlink != 0:
		data, size = strings.NewReader(e.Target), int64(len(e.Target))
	case e.Mode&fs.ModeDevice != 0:
		h.RdevMajor, h.RdevMinor = e.Major, e.Minor
	case e.Src != "":
		f, err := os.Open(e.Src)
		if err != nil {
			return err
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			return err
		}
		data, size = f, st.Size()
	default:
		data, size = bytes.NewReader(e.Data), int64(len(e.Data))
	}
	if size > 1<<32-1 {
		return fmt.Errorf("%d bytes is too large for cpio newc", size)
	}
	h.FileSize = uint32(size)
	return writeCPIOMember(w, h, e.Path, data, size)
}

// writeCPIOMember writes one header, name and data (size bytes from data).
func writeCPIOMember(w io.Writer, h cpioHeader, name string, data io.Reader, size int64) error {
	h.NameSize = uint32(len(name) + 1)
	buf := append(h.marshal(), name...)
	buf = append(buf, make([]byte, 1+pad4(cpioHdrLen+len(name)+1))...)
	if _, err := w.Write(buf); err != nil {
		return err
	}
	if size == 0 {
		return nil
	}
	n, err := io.CopyN(w, data, size)
	if err != nil {
		return fmt.Errorf("copy %d of %d bytes: %w", n, size, err)
	}
	_, err = w.Write(make([]byte, pad4(int(size%4))))
	return err
}
