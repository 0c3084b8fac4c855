package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/openslicer/openslicer/api"
)

// Exec runs a command in a VM and streams its output (POST
// /vm/{hostname}/exec). When stdin is non-nil it is sent as the chunked
// request body, concurrently with reading the response. Exec never closes
// stdin; it stops reading at EOF or once the stream is closed, though a Read
// already blocked at that moment is not interrupted. The caller must Close
// the stream; closing it early (or cancelling ctx) ends the remote command.
func (c *Client) Exec(ctx context.Context, hostname string, req *api.ExecRequest, stdin io.Reader) (*ExecStream, error) {
	if req == nil || req.Command == "" {
		return nil, fmt.Errorf("%w: exec needs a command", api.ErrInvalid)
	}
	path, err := escapePath("vm", hostname, "exec")
	if err != nil {
		return nil, err
	}
	r := *req
	r.Buffered, r.Background = false, false
	r.Stdin = stdin != nil
	var body io.Reader
	if stdin != nil {
		// Hide Close so the transport cannot close the caller's reader,
		// and hide any known length so the body is always chunked.
		body = struct{ io.Reader }{stdin}
	}
	resp, err := c.do(ctx, http.MethodPost, path, r.Query(), body, "")
	if err != nil {
		return nil, err
	}
	return &ExecStream{body: resp.Body, r: bufio.NewReader(resp.Body)}, nil
}

// ExecBuffered runs a command to completion and returns all its output at
// once (buffered=true). A non-zero exit code is not an error. The output
// fields are as sent: base64 when res.Encoding says so (see DecodeOutput).
func (c *Client) ExecBuffered(ctx context.Context, hostname string, req *api.ExecRequest) (*api.ExecResult, error) {
	if req == nil || req.Command == "" {
		return nil, fmt.Errorf("%w: exec needs a command", api.ErrInvalid)
	}
	r := *req
	r.Buffered, r.Background, r.Stdin = true, false, false
	var res api.ExecResult
	if err := c.call(ctx, http.MethodPost, r.Query(), nil, &res, "vm", hostname, "exec"); err != nil {
		return nil, err
	}
	return &res, nil
}

// DecodeOutput decodes an output field of an exec frame or result according
// to its encoding: api.StdioBase64, or text (anything else).
func DecodeOutput(encoding, s string) ([]byte, error) {
	if encoding != api.StdioBase64 {
		return []byte(s), nil
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("decode base64 exec output: %w", err)
	}
	return b, nil
}

// FrameError is a final exec frame that carries an error instead of an
// exit: typically the command could not be started.
type FrameError struct {
	Message  string
	ExitCode int
}

func (e *FrameError) Error() string { return e.Message }

// ExecStream reads the NDJSON frames of a streaming exec.
type ExecStream struct {
	body   io.ReadCloser
	r      *bufio.Reader
	done   bool
	legacy bool // frames without a type: the stream's end is its EOF
	eofEnd bool // a log replay: EOF is a normal end, exit frame or not
}

// Next returns the next frame as sent. After the final frame (an exit or
// error frame) it returns io.EOF. A stream that ends before its final frame
// is an error wrapping io.ErrUnexpectedEOF.
func (s *ExecStream) Next() (*api.ExecFrame, error) {
	if s.done {
		return nil, io.EOF
	}
	for {
		line, err := s.r.ReadBytes('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("read exec stream: %w", err)
		}
		if len(bytes.TrimSpace(line)) > 0 {
			var f api.ExecFrame
			if jerr := json.Unmarshal(line, &f); jerr != nil {
				return nil, fmt.Errorf("decode exec frame: %w", jerr)
			}
			s.legacy = s.legacy || f.Type == ""
			s.done = f.Final()
			return &f, nil
		}
		if err != nil { // EOF with nothing left
			s.done = true
			if s.legacy || s.eofEnd {
				return nil, io.EOF
			}
			return nil, fmt.Errorf("exec stream ended before the exit frame: %w", io.ErrUnexpectedEOF)
		}
	}
}

// Copy writes the decoded output of every remaining frame to stdout and
// stderr (nil discards) and returns the command's exit code. A non-zero
// exit is not an error; a final error frame is returned as a *FrameError,
// with its exit code (1 when the frame has none).
func (s *ExecStream) Copy(stdout, stderr io.Writer) (int, error) {
	if stdout == nil {
		stdout = io.Discard
	}
	if stderr == nil {
		stderr = io.Discard
	}
	code := 0
	for {
		f, err := s.Next()
		if errors.Is(err, io.EOF) {
			return code, nil
		}
		if err != nil {
			return code, err
		}
		code = f.ExitCode
		if f.Error != "" {
			if code == 0 {
				code = 1
			}
			return code, &FrameError{Message: f.Error, ExitCode: code}
		}
		out, errOut, err := framePayload(f)
		if err != nil {
			return code, err
		}
		if err := writeAll(stdout, out); err != nil {
			return code, fmt.Errorf("write stdout: %w", err)
		}
		if err := writeAll(stderr, errOut); err != nil {
			return code, fmt.Errorf("write stderr: %w", err)
		}
	}
}

// Close ends the stream; if the command is still running the daemon ends it.
func (s *ExecStream) Close() error {
	s.done = true
	return s.body.Close()
}

// framePayload returns the decoded stdout and stderr bytes of one frame.
// Typed frames carry their payload in stdout/stderr, or data; untyped
// (legacy) frames carry both streams in stdout and stderr.
func framePayload(f *api.ExecFrame) (stdout, stderr []byte, err error) {
	var out, errOut string
	switch f.Type {
	case api.FrameStdout:
		out = firstNonEmpty(f.Stdout, f.Data)
	case api.FrameStderr:
		errOut = firstNonEmpty(f.Stderr, f.Data)
	case "":
		out, errOut = f.Stdout, f.Stderr
		if f.ID != 0 && out == "" && errOut == "" {
			out = f.Data // an untyped background log frame
		}
	default: // started, exit, gap: no output
		return nil, nil, nil
	}
	if stdout, err = DecodeOutput(f.Encoding, out); err != nil {
		return nil, nil, err
	}
	if stderr, err = DecodeOutput(f.Encoding, errOut); err != nil {
		return nil, nil, err
	}
	return stdout, stderr, nil
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func writeAll(w io.Writer, b []byte) error {
	if len(b) == 0 {
		return nil
	}
	_, err := w.Write(b)
	return err
}
