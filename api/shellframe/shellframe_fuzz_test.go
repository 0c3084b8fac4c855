package shellframe

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"testing"

	"github.com/openslicer/openslicer/api"
)

// FuzzShellFrame feeds arbitrary bytes to the shell frame codec (spec
// §3.11) as one WebSocket message (Parse, what the daemon checks each
// client message with) and as a stream (Read, what both ends read the
// agent stream with). It checks that a frame is accepted exactly when the
// message holds its header and declared payload, that the frame is that
// prefix and re-encodes to itself, that a stream reads back as the frames
// it is made of, and that window sizes decode within a terminal's range.
// (The client, the daemon and the guest all use this one codec.)
func FuzzShellFrame(f *testing.F) {
	for _, b := range [][]byte{
		New(api.ShellData, []byte("ls -l\n")),
		New(api.ShellWindowSize, WindowSizePayload(80, 24)),
		New(api.ShellWindowSize, WindowSizePayload(0, 24)),
		New(api.ShellWindowSize, WindowSizePayload(1<<20, math.MaxUint32)),
		New(api.ShellShutdown, nil),
		New(api.ShellHeartbeat, nil),
		append(New(api.ShellData, []byte("a")), New(api.ShellSessionClose, nil)...),
		{api.ShellData, 0, 0, 0, 9, 'x'},        // declares more than it has
		{api.ShellData, 0xff, 0xff, 0xff, 0xff}, // declares 4 GiB
		{api.ShellData, 0x00, 0xff, 0xff, 0xfb}, // exactly MaxPayload, absent
		{0x7f, 0, 0, 0, 1, 0, 0xff, 0, 0, 0},    // unknown type, trailing bytes
		{api.ShellData, 0, 0},                   // shorter than a header
		{},
	} {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fzCheckParse(t, b)
		fzCheckReadShellFrames(t, b)
	})
}

// declared is the payload length a message's header declares.
func fzDeclared(b []byte) int64 {
	return int64(binary.BigEndian.Uint32(b[1:HeaderSize]))
}

func fzCheckParse(t *testing.T, b []byte) {
	fr, err := Parse(b)
	ok := len(b) >= HeaderSize && fzDeclared(b) <= int64(len(b)-HeaderSize) && fzDeclared(b) <= MaxPayload
	switch {
	case ok != (err == nil):
		t.Fatalf("Parse(%x): err = %v, want ok = %v", b, err, ok)
	case !ok:
		return
	}
	n := HeaderSize + int(fzDeclared(b))
	switch {
	case !bytes.Equal(fr, b[:n]):
		t.Fatalf("Parse(%x) = %x, want the first %d bytes", b, []byte(fr), n)
	case fr.Type() != b[0] || !bytes.Equal(fr.Payload(), b[HeaderSize:n]):
		t.Fatalf("frame %x: Type, Payload = %d, %x", []byte(fr), fr.Type(), fr.Payload())
	case !bytes.Equal(New(fr.Type(), fr.Payload()), fr):
		t.Fatalf("frame %x does not re-encode to itself: %x", []byte(fr), []byte(New(fr.Type(), fr.Payload())))
	}
	if fr.Type() == api.ShellWindowSize {
		fzCheckWindowSize(t, fr.Payload())
	}
}

func fzCheckWindowSize(t *testing.T, p []byte) {
	cols, rows, ok := WindowSize(p)
	if want := len(p) == 8 && binary.BigEndian.Uint32(p[:4]) != 0 && binary.BigEndian.Uint32(p[4:]) != 0; ok != want {
		t.Fatalf("WindowSize(%x) ok = %v, want %v", p, ok, want)
	}
	if !ok {
		return
	}
	c, r := binary.BigEndian.Uint32(p[:4]), binary.BigEndian.Uint32(p[4:])
	if uint32(cols) != min(c, math.MaxUint16) || uint32(rows) != min(r, math.MaxUint16) {
		t.Fatalf("WindowSize(%x) = %d, %d; want %d, %d clamped to %d", p, cols, rows, c, r, math.MaxUint16)
	}
}

// checkReadShellFrames reads b as a stream of frames: every frame read is
// the next bytes of b and parses as itself, and the stream ends with io.EOF
// exactly at the end of b, io.ErrUnexpectedEOF inside a frame, or an error
// for a header declaring more than MaxPayload.
func fzCheckReadShellFrames(t *testing.T, b []byte) {
	r := bytes.NewReader(b)
	off := 0
	for {
		fr, err := Read(r)
		rest := b[off:]
		switch {
		case err == nil:
			if !bytes.HasPrefix(rest, fr) || len(fr) < HeaderSize {
				t.Fatalf("frame %x read at offset %d is not the next bytes of the stream", []byte(fr), off)
			}
			if p, perr := Parse(rest); perr != nil || !bytes.Equal(p, fr) {
				t.Fatalf("frame %x read at offset %d: ParseShellFrame of the rest = %x, %v", []byte(fr), off, []byte(p), perr)
			}
			off += len(fr)
			continue
		case errors.Is(err, io.EOF):
			if len(rest) != 0 {
				t.Fatalf("io.EOF at offset %d of %d", off, len(b))
			}
		case errors.Is(err, io.ErrUnexpectedEOF):
			if len(rest) == 0 || len(rest) >= HeaderSize && fzDeclared(rest) <= int64(len(rest)-HeaderSize) {
				t.Fatalf("io.ErrUnexpectedEOF at offset %d with a whole frame or nothing left: %x", off, rest)
			}
		default:
			if len(rest) < HeaderSize || fzDeclared(rest) <= MaxPayload {
				t.Fatalf("error %v at offset %d for a frame within the limit: %x", err, off, rest)
			}
		}
		return
	}
}
