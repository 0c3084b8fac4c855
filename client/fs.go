package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/openslicer/openslicer/api"
)

// ReadDir lists a directory in a VM (GET /vm/{hostname}/fs/readdir).
func (c *Client) ReadDir(ctx context.Context, hostname, path string) ([]api.FSInfo, error) {
	var entries []api.FSInfo
	err := c.call(ctx, http.MethodGet, url.Values{"path": {path}}, nil, &entries, "vm", hostname, "fs", "readdir")
	if err != nil {
		return nil, notExist(err)
	}
	return entries, nil
}

// Stat describes a path in a VM (GET /vm/{hostname}/fs/stat). A missing
// path is an error matching os.ErrNotExist (and api.ErrNotFound).
func (c *Client) Stat(ctx context.Context, hostname, path string) (*api.FSInfo, error) {
	var info api.FSInfo
	err := c.call(ctx, http.MethodGet, url.Values{"path": {path}}, nil, &info, "vm", hostname, "fs", "stat")
	if err != nil {
		return nil, notExist(err)
	}
	return &info, nil
}

// Mkdir creates a directory in a VM (POST /vm/{hostname}/fs/mkdir).
func (c *Client) Mkdir(ctx context.Context, hostname string, req api.FSMkdirRequest) error {
	return c.call(ctx, http.MethodPost, nil, req, nil, "vm", hostname, "fs", "mkdir")
}

// Remove deletes a path in a VM, with everything under it when recursive
// (DELETE /vm/{hostname}/fs/remove).
func (c *Client) Remove(ctx context.Context, hostname, path string, recursive bool) error {
	q := url.Values{"path": {path}, "recursive": {strconv.FormatBool(recursive)}}
	return c.call(ctx, http.MethodDelete, q, nil, nil, "vm", hostname, "fs", "remove")
}

// notExist adds os.ErrNotExist to a 404, so callers can use either class.
func notExist(err error) error {
	if errors.Is(err, api.ErrNotFound) {
		return fmt.Errorf("%w: %w", os.ErrNotExist, err)
	}
	return err
}

// watchQuery encodes a watch request as its query string.
func watchQuery(r api.FSWatchRequest) url.Values {
	q := url.Values{}
	for _, p := range r.Paths {
		q.Add("paths", p)
	}
	for _, p := range r.Patterns {
		q.Add("patterns", p)
	}
	for _, e := range r.Events {
		q.Add("events", e)
	}
	if r.UID != 0 && r.UID != ^uint32(0) {
		q.Set("uid", strconv.FormatUint(uint64(r.UID), 10))
	}
	if r.Recursive {
		q.Set("recursive", "true")
	}
	if r.OneShot {
		q.Set("one_shot", "true")
	}
	setIf(q, "debounce", r.Debounce)
	setIf(q, "timeout", r.Timeout)
	if r.MaxEvents > 0 {
		q.Set("max_events", strconv.Itoa(r.MaxEvents))
	}
	return q
}

func setIf(q url.Values, k, v string) {
	if v != "" {
		q.Set(k, v)
	}
}

// WatchFS watches paths in a VM for changes (GET /vm/{hostname}/fs/watch,
// server-sent events). req.LastEventID, when set, is sent as the
// Last-Event-ID header. The caller must Close the stream.
func (c *Client) WatchFS(ctx context.Context, hostname string, req api.FSWatchRequest) (*WatchStream, error) {
	if len(req.Paths) == 0 {
		return nil, fmt.Errorf("%w: watch needs at least one path", api.ErrInvalid)
	}
	path, err := escapePath("vm", hostname, "fs", "watch")
	if err != nil {
		return nil, err
	}
	hdr := http.Header{"Accept": {"text/event-stream"}}
	if req.LastEventID != "" {
		hdr.Set("Last-Event-ID", req.LastEventID)
	}
	resp, err := c.doHeader(ctx, http.MethodGet, path, watchQuery(req), nil, hdr)
	if err != nil {
		return nil, err
	}
	return &WatchStream{body: resp.Body, r: bufio.NewReader(resp.Body)}, nil
}

// WatchStream reads the events of a filesystem watch.
type WatchStream struct {
	body io.ReadCloser
	r    *bufio.Reader
	// LastEventID is the id of the last event read, to resume with.
	LastEventID string
}

// sseEvent is one dispatched server-sent event.
type sseEvent struct {
	id, event, data string
}

// Next returns the next watch event; io.EOF when the server ends the
// stream. Comments (heartbeats) and events of other types are skipped.
func (s *WatchStream) Next() (*api.FSWatchEvent, error) {
	for {
		ev, err := readSSE(s.r)
		if err != nil {
			return nil, err
		}
		if ev.id != "" {
			s.LastEventID = ev.id
		}
		if ev.event != "" && ev.event != "watch" {
			continue
		}
		var we api.FSWatchEvent
		if err := json.Unmarshal([]byte(ev.data), &we); err != nil {
			return nil, fmt.Errorf("decode watch event: %w", err)
		}
		return &we, nil
	}
}

// Close ends the watch.
func (s *WatchStream) Close() error { return s.body.Close() }

// readSSE reads lines up to the blank line that dispatches an event with
// data. Multiple data lines are joined with "\n", as the SSE format says.
func readSSE(r *bufio.Reader) (sseEvent, error) {
	var ev sseEvent
	var data []string
	for {
		line, err := r.ReadString('\n')
		if err != nil && !(errors.Is(err, io.EOF) && line != "") {
			if errors.Is(err, io.EOF) {
				return ev, io.EOF
			}
			return ev, fmt.Errorf("read watch stream: %w", err)
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			if data != nil {
				ev.data = strings.Join(data, "\n")
				return ev, nil
			}
			ev = sseEvent{} // an event without data is dropped
			continue
		}
		if strings.HasPrefix(line, ":") {
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "id":
			ev.id = value
		case "event":
			ev.event = value
		case "data":
			data = append(data, value)
		}
	}
}
