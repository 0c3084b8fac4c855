package agent

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
)

// shellFrameHeader is the size of a shell frame's type byte and length.
const shellFrameHeader = 5

// MaxShellPayload is the largest payload a shell frame may carry, so that
// a whole frame fits in one 16 MiB WebSocket message (the read limit of the
// daemon and of the client).
const MaxShellPayload = 16<<20 - shellFrameHeader

// ShellFrame is one encoded frame of a shell session (spec §3.11): a type
// byte (api.ShellData and the others), the payload length as 4 big-endian
// bytes, then the payload. The encoding is the value, so a frame travels
// between the WebSocket and the agent stream as it is.
type ShellFrame []byte

// NewShellFrame encodes a frame of type typ carrying payload.
func NewShellFrame(typ byte, payload []byte) ShellFrame {
	f := make(ShellFrame, shellFrameHeader+len(payload))
	f[0] = typ
	binary.BigEndian.PutUint32(f[1:shellFrameHeader], uint32(len(payload)))
	copy(f[shellFrameHeader:], payload)
	return f
}

// Type is the frame's type byte.
func (f ShellFrame) Type() byte { return f[0] }

// Payload is the frame's payload.
func (f ShellFrame) Payload() []byte { return f[shellFrameHeader:] }

// ParseShellFrame checks that b (one WebSocket message) holds a frame and
// returns it. Bytes after the declared payload are dropped, as Slicer's
// clients drop them; a message shorter than its header or its declared
// length, or declaring more than MaxShellPayload, is an error.
func ParseShellFrame(b []byte) (ShellFrame, error) {
	if len(b) < shellFrameHeader {
		return nil, fmt.Errorf("shell frame of %d bytes is shorter than its header", len(b))
	}
	n := binary.BigEndian.Uint32(b[1:shellFrameHeader])
	if n > MaxShellPayload {
		return nil, fmt.Errorf("shell frame declares %d payload bytes, more than %d", n, MaxShellPayload)
	}
	if int64(n) > int64(len(b)-shellFrameHeader) {
		return nil, fmt.Errorf("shell frame declares %d payload bytes but has %d", n, len(b)-shellFrameHeader)
	}
	return ShellFrame(b[:shellFrameHeader+int(n)]), nil
}

// ReadShellFrame reads the next frame from a stream of frames. It returns
// io.EOF when r ends between frames, io.ErrUnexpectedEOF when it ends
// inside one, and an error for a frame declaring more than
// MaxShellPayload.
func ReadShellFrame(r io.Reader) (ShellFrame, error) {
	var hdr [shellFrameHeader]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > MaxShellPayload {
		return nil, fmt.Errorf("shell frame declares %d payload bytes, more than %d", n, MaxShellPayload)
	}
	f := make(ShellFrame, shellFrameHeader+int(n))
	copy(f, hdr[:])
	if _, err := io.ReadFull(r, f[shellFrameHeader:]); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return f, nil
}

// windowSize decodes the payload of an api.ShellWindowSize frame: columns
// then rows, each a big-endian uint32, clamped to what a terminal holds.
// ok is false when the payload is not 8 bytes or a dimension is zero.
func windowSize(p []byte) (cols, rows uint16, ok bool) {
	if len(p) != 8 {
		return 0, 0, false
	}
	c, r := binary.BigEndian.Uint32(p[:4]), binary.BigEndian.Uint32(p[4:])
	if c == 0 || r == 0 {
		return 0, 0, false
	}
	return uint16(min(c, math.MaxUint16)), uint16(min(r, math.MaxUint16)), true
}
