package shellframe

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/openslicer/openslicer/api"
)

// frameHeader returns a frame header declaring n payload bytes.
func frameHeader(typ byte, n uint32) []byte {
	b := []byte{typ, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[1:], n)
	return b
}

func TestNew(t *testing.T) {
	for _, tc := range []struct {
		typ     byte
		payload []byte
		want    []byte
	}{
		{api.ShellData, []byte("ls\n"), []byte{1, 0, 0, 0, 3, 'l', 's', '\n'}},
		{api.ShellHeartbeat, nil, []byte{4, 0, 0, 0, 0}},
		{api.ShellWindowSize, []byte{0, 0, 0, 80, 0, 0, 0, 24}, []byte{2, 0, 0, 0, 8, 0, 0, 0, 80, 0, 0, 0, 24}},
	} {
		f := New(tc.typ, tc.payload)
		if !bytes.Equal(f, tc.want) {
			t.Errorf("New(%d, %q) = %v, want %v", tc.typ, tc.payload, []byte(f), tc.want)
		}
		if f.Type() != tc.typ || !bytes.Equal(f.Payload(), tc.payload) {
			t.Errorf("frame %v: Type, Payload = %d, %q; want %d, %q", []byte(f), f.Type(), f.Payload(), tc.typ, tc.payload)
		}
	}
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      []byte
		want    []byte // nil: an error containing wantErr
		wantErr string
	}{
		{"data", []byte{1, 0, 0, 0, 2, 'h', 'i'}, []byte{1, 0, 0, 0, 2, 'h', 'i'}, ""},
		{"empty payload", []byte{3, 0, 0, 0, 0}, []byte{3, 0, 0, 0, 0}, ""},
		{"trailing bytes dropped", []byte{1, 0, 0, 0, 1, 'a', 'b', 'c'}, []byte{1, 0, 0, 0, 1, 'a'}, ""},
		{"unknown type kept", []byte{9, 0, 0, 0, 0}, []byte{9, 0, 0, 0, 0}, ""},
		{"empty", nil, nil, "shorter than its header"},
		{"short header", []byte{1, 0, 0}, nil, "shorter than its header"},
		{"short payload", []byte{1, 0, 0, 0, 5, 'a'}, nil, "declares 5 payload bytes but has 1"},
		{"too large", append(frameHeader(1, MaxPayload+1), 'a'), nil, "more than"},
	} {
		f, err := Parse(tc.in)
		switch {
		case tc.want == nil && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%s: Parse(%v) error = %v, want one containing %q", tc.name, tc.in, err, tc.wantErr)
		case tc.want != nil && (err != nil || !bytes.Equal(f, tc.want)):
			t.Errorf("%s: Parse(%v) = %v, %v; want %v", tc.name, tc.in, []byte(f), err, tc.want)
		}
	}
}

func TestRead(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      []byte
		want    [][]byte
		wantErr error // after the frames; nil: a non-EOF error
	}{
		{"none", nil, nil, io.EOF},
		{"two", []byte{1, 0, 0, 0, 1, 'a', 5, 0, 0, 0, 0}, [][]byte{{1, 0, 0, 0, 1, 'a'}, {5, 0, 0, 0, 0}}, io.EOF},
		{"cut in the header", []byte{1, 0, 0, 0, 1, 'a', 1, 0}, [][]byte{{1, 0, 0, 0, 1, 'a'}}, io.ErrUnexpectedEOF},
		{"cut in the payload", []byte{1, 0, 0, 0, 3, 'a'}, nil, io.ErrUnexpectedEOF},
		{"too large", frameHeader(1, MaxPayload+1), nil, nil},
	} {
		r := bytes.NewReader(tc.in)
		var got [][]byte
		var err error
		for {
			var f Frame
			if f, err = Read(r); err != nil {
				break
			}
			got = append(got, f)
		}
		if len(got) != len(tc.want) {
			t.Errorf("%s: read %d frames %v, want %v", tc.name, len(got), got, tc.want)
		}
		for i := range min(len(got), len(tc.want)) {
			if !bytes.Equal(got[i], tc.want[i]) {
				t.Errorf("%s: frame %d = %v, want %v", tc.name, i, got[i], tc.want[i])
			}
		}
		if tc.wantErr != nil && !errors.Is(err, tc.wantErr) || tc.wantErr == nil && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)) {
			t.Errorf("%s: last error = %v, want %v", tc.name, err, tc.wantErr)
		}
	}
}

func TestWindowSize(t *testing.T) {
	for _, tc := range []struct {
		name       string
		in         []byte
		cols, rows uint16
		ok         bool
	}{
		{"80x24", []byte{0, 0, 0, 80, 0, 0, 0, 24}, 80, 24, true},
		{"large", []byte{0, 0, 1, 44, 0, 0, 0, 100}, 300, 100, true},
		{"clamped", []byte{0, 1, 0, 0, 0xff, 0xff, 0xff, 0xff}, 65535, 65535, true},
		{"zero cols", []byte{0, 0, 0, 0, 0, 0, 0, 24}, 0, 0, false},
		{"short", []byte{0, 0, 0, 80}, 0, 0, false},
		{"long", make([]byte, 9), 0, 0, false},
	} {
		cols, rows, ok := WindowSize(tc.in)
		if cols != tc.cols || rows != tc.rows || ok != tc.ok {
			t.Errorf("%s: WindowSize(%v) = %d, %d, %v; want %d, %d, %v", tc.name, tc.in, cols, rows, ok, tc.cols, tc.rows, tc.ok)
		}
	}
}
