package guest

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/openslicer/openslicer/api"
)

// Exit codes of a command that could not start, as shells report them.
const (
	exitNotFound      = 127
	exitNotExecutable = 126
)

// startedFrame is the first frame of a stream.
func startedFrame(pid int, at time.Time) api.ExecFrame {
	return api.ExecFrame{Timestamp: at, Type: api.FrameStarted, Pid: pid, StartedAt: at}
}

// outputFrame carries one chunk of stdout or stderr (stream is
// api.FrameStdout or api.FrameStderr), encoded as stdio asks.
func outputFrame(stream, stdio string, data []byte, at time.Time) api.ExecFrame {
	f := api.ExecFrame{Timestamp: at, Type: stream}
	payload := string(data)
	if stdio == api.StdioBase64 {
		f.Encoding = api.StdioBase64
		payload = base64.StdEncoding.EncodeToString(data)
	}
	if stream == api.FrameStderr {
		f.Stderr = payload
	} else {
		f.Stdout = payload
	}
	return f
}

// exitStatus is how a process ended: its exit code, or the signal that
// killed it.
type exitStatus struct {
	Code   int
	Signal string // "SIGKILL"; empty when the process exited
}

// exitFrame is the last frame of a stream that started: the process ended
// at ended, and the frame is sent at at (after its output was drained).
func exitFrame(st exitStatus, ended, at time.Time) api.ExecFrame {
	return api.ExecFrame{Timestamp: at, Type: api.FrameExit, ExitCode: st.Code, Signal: st.Signal, EndedAt: ended}
}

// errorFrame is the one and only frame of a command that could not start.
func errorFrame(err error) api.ExecFrame {
	return api.ExecFrame{Timestamp: time.Now().UTC(), Error: err.Error(), ExitCode: startErrorCode(err)}
}

// startErrorCode is the exit code reported for a command that could not
// start: 126 when it was found but may not be run, 127 otherwise.
func startErrorCode(err error) int {
	if errors.Is(err, fs.ErrPermission) {
		return exitNotExecutable
	}
	return exitNotFound
}

// splitUTF8 splits b before an incomplete UTF-8 sequence at its end, so that
// text-mode output never cuts a character in two across frames. Invalid
// bytes are not held back: they could never be completed.
func splitUTF8(b []byte) (complete, rest []byte) {
	// A sequence is at most utf8.UTFMax bytes: look back that far for the
	// start byte of the last one.
	for i := len(b) - 1; i >= 0 && i >= len(b)-utf8.UTFMax; i-- {
		c := b[i]
		if c < utf8.RuneSelf { // ASCII: everything up to here is whole
			return b, nil
		}
		if !utf8.RuneStart(c) {
			continue
		}
		if utf8.FullRune(b[i:]) {
			return b, nil
		}
		return b[:i], b[i:]
	}
	return b, nil
}

// maxBuffered is the most output of each stream a buffered exec keeps; the
// rest is read and dropped so the process can finish.
const maxBuffered = 32 << 20

// capped collects output up to maxBuffered bytes and counts what it drops.
type capped struct {
	buf     []byte
	dropped int64
}

func (c *capped) add(b []byte) {
	n := min(len(b), maxBuffered-len(c.buf))
	c.buf = append(c.buf, b[:n]...)
	c.dropped += int64(len(b) - n)
}

// bufferedResult is the answer of a buffered exec.
func bufferedResult(stdio string, pid int, started, ended time.Time, st exitStatus, stdout, stderr capped) api.ExecResult {
	res := api.ExecResult{
		Stdout: string(stdout.buf), Stderr: string(stderr.buf),
		Pid: pid, StartedAt: started, EndedAt: ended,
		ExitCode: st.Code, Signal: st.Signal,
	}
	if stdio == api.StdioBase64 {
		res.Encoding = api.StdioBase64
		res.Stdout = base64.StdEncoding.EncodeToString(stdout.buf)
		res.Stderr = base64.StdEncoding.EncodeToString(stderr.buf)
	}
	var cut []string
	for _, c := range []struct {
		name string
		c    capped
	}{{"stdout", stdout}, {"stderr", stderr}} {
		if c.c.dropped > 0 {
			cut = append(cut, fmt.Sprintf("%s truncated to %d bytes (%d dropped)", c.name, maxBuffered, c.c.dropped))
		}
	}
	res.Error = strings.Join(cut, "; ")
	return res
}
