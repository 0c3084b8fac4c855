// Package shellframe is the frame codec of shell sessions (spec §3.11),
// the one implementation every end uses: the public client, the daemon's
// WebSocket bridge, and the guest agent's PTY session. A frame is a type
// byte (api.ShellData and the others), the payload length as 4 big-endian
// bytes, then the payload. Standard library only.
package shellframe

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
)

// HeaderSize is the size of a frame's type byte and length.
const HeaderSize = 5

// MaxPayload is the largest payload a shell frame may carry, so that
// a whole frame fits in one 16 MiB WebSocket message (the read limit of the
// daemon and of the client).
const MaxPayload = 16<<20 - HeaderSize

// Frame is one encoded frame of a shell session (spec §3.11): a type
// byte (api.ShellData and the others), the payload length as 4 big-endian
// bytes, then the payload. The encoding is the value, so a frame travels
// between the WebSocket and the agent stream as it is.
type Frame []byte

// New encodes a frame of type typ carrying payload.
func New(typ byte, payload []byte) Frame {
	f := make(Frame, HeaderSize+len(payload))
	f[0] = typ
	binary.BigEndian.PutUint32(f[1:HeaderSize], uint32(len(payload)))
	copy(f[HeaderSize:], payload)
	return f
}

// Type is the frame's type byte.
func (f Frame) Type() byte { return f[0] }

// Payload is the frame's payload.
func (f Frame) Payload() []byte { return f[HeaderSize:] }

// Parse checks that b (one WebSocket message) holds a frame and
// returns it. Bytes after the declared payload are dropped, as Slicer's
// clients drop them; a message shorter than its header or its declared
// length, or declaring more than MaxPayload, is an error.
func Parse(b []byte) (Frame, error) {
	if len(b) < HeaderSize {
		return nil, fmt.Errorf("shell frame of %d bytes is shorter than its header", len(b))
	}
	n := binary.BigEndian.Uint32(b[1:HeaderSize])
	if n > MaxPayload {
		return nil, fmt.Errorf("shell frame declares %d payload bytes, more than %d", n, MaxPayload)
	}
	if int64(n) > int64(len(b)-HeaderSize) {
		return nil, fmt.Errorf("shell frame declares %d payload bytes but has %d", n, len(b)-HeaderSize)
	}
	return Frame(b[:HeaderSize+int(n)]), nil
}

// Read reads the next frame from a stream of frames. It returns
// io.EOF when r ends between frames, io.ErrUnexpectedEOF when it ends
// inside one, and an error for a frame declaring more than
// MaxPayload.
func Read(r io.Reader) (Frame, error) {
	var hdr [HeaderSize]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > MaxPayload {
		return nil, fmt.Errorf("shell frame declares %d payload bytes, more than %d", n, MaxPayload)
	}
	f := make(Frame, HeaderSize+int(n))
	copy(f, hdr[:])
	if _, err := io.ReadFull(r, f[HeaderSize:]); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return f, nil
}

// WindowSize decodes the payload of an api.ShellWindowSize frame: columns
// then rows, each a big-endian uint32, clamped to what a terminal holds.
// ok is false when the payload is not 8 bytes or a dimension is zero.
func WindowSize(p []byte) (cols, rows uint16, ok bool) {
	if len(p) != 8 {
		return 0, 0, false
	}
	c, r := binary.BigEndian.Uint32(p[:4]), binary.BigEndian.Uint32(p[4:])
	if c == 0 || r == 0 {
		return 0, 0, false
	}
	return uint16(min(c, math.MaxUint16)), uint16(min(r, math.MaxUint16)), true
}

// WindowSizePayload encodes a terminal size for an api.ShellWindowSize
// frame: columns then rows, each a big-endian uint32.
func WindowSizePayload(cols, rows uint32) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint32(b[:4], cols)
	binary.BigEndian.PutUint32(b[4:], rows)
	return b
}
