// Package client is the Go client for the OpenSlicer REST API. It speaks the
// wire format of Slicer's REST API (the types live in package api), over TCP
// or a unix socket.
//
// Every call takes a context first. A response outside 2xx comes back as an
// *api.Error that unwraps to its error class, so callers can write
// errors.Is(err, api.ErrNotFound).
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/openslicer/openslicer/api"
)

// DefaultURL is the daemon's default API address.
const DefaultURL = "http://127.0.0.1:8080"

// DefaultUserAgent is the User-Agent New sets.
const DefaultUserAgent = "openslicer-client/1"

// socketBase is the URL used for every request over a unix socket, so the
// Host header is "unix", as Slicer's SDK sends it.
const socketBase = "http://unix"

// maxErrorBody bounds how much of an error response is read.
const maxErrorBody = 64 << 10

// Client talks to one daemon. The zero value talks to DefaultURL without a
// token. Set the fields before the first call and do not change them after:
// the transport is derived from BaseURL once.
type Client struct {
	// BaseURL is http(s)://host[:port][/prefix], or a unix socket: a path
	// starting with /, ./, ../ or ~/, or ending in .sock, optionally written
	// as unix://PATH. Empty means DefaultURL.
	BaseURL string
	// Token is sent as "Authorization: Bearer <token>" when non-empty.
	Token string
	// UserAgent is sent when non-empty.
	UserAgent string
	// HTTPClient is used for TCP URLs (nil means http.DefaultClient). For a
	// unix socket its settings are kept but its Transport is replaced.
	HTTPClient *http.Client

	once sync.Once
	base *url.URL
	hc   *http.Client
	err  error
}

// New returns a client for baseURL (see Client.BaseURL) with a bearer token,
// which may be empty.
func New(baseURL, token string) *Client {
	return &Client{BaseURL: baseURL, Token: token, UserAgent: DefaultUserAgent}
}

// FromEnv returns a client configured from the environment: SLICER_URL
// (default DefaultURL), SLICER_TOKEN, or else SLICER_TOKEN_FILE (read with
// ReadTokenFile), and SLICER_USER_AGENT. No token at all is not an error:
// a daemon on a unix socket usually runs without auth.
func FromEnv() (*Client, error) {
	return fromEnv(os.Getenv)
}

func fromEnv(getenv func(string) string) (*Client, error) {
	baseURL := getenv("SLICER_URL")
	if baseURL == "" {
		baseURL = DefaultURL
	}
	token := getenv("SLICER_TOKEN")
	if token == "" {
		if f := getenv("SLICER_TOKEN_FILE"); f != "" {
			var err error
			if token, err = ReadTokenFile(f); err != nil {
				return nil, fmt.Errorf("SLICER_TOKEN_FILE: %w", err)
			}
		}
	}
	c := New(baseURL, token)
	if ua := getenv("SLICER_USER_AGENT"); ua != "" {
		c.UserAgent = ua
	}
	return c, nil
}

// ReadTokenFile reads a bearer token from path, expanding a leading ~/ and
// trimming white space. An empty file is an error.
func ReadTokenFile(path string) (string, error) {
	home, _ := os.UserHomeDir()
	path = expandHome(path, home)
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read token file: %w", err)
	}
	token := strings.TrimSpace(string(b))
	if token == "" {
		return "", fmt.Errorf("token file %q is empty", path)
	}
	return token, nil
}

// expandHome replaces a leading "~" or "~/" with home, when home is known.
func expandHome(p, home string) string {
	if home == "" {
		return p
	}
	if p == "~" {
		return home
	}
	if rest, ok := strings.CutPrefix(p, "~/"); ok {
		return filepath.Join(home, rest)
	}
	return p
}

// SocketPath reports whether baseURL names a unix socket and returns its
// path. After trimming white space and an optional "unix://" prefix, a URL
// that starts with /, ./, ../ or ~/, or ends with .sock, is a socket; home
// replaces a leading ~.
func SocketPath(baseURL, home string) (string, bool) {
	s := strings.TrimPrefix(strings.TrimSpace(baseURL), "unix://")
	for _, prefix := range []string{"/", "./", "../", "~/"} {
		if strings.HasPrefix(s, prefix) {
			return expandHome(s, home), true
		}
	}
	if strings.HasSuffix(s, ".sock") {
		return expandHome(s, home), true
	}
	return "", false
}

// setup derives the base URL and HTTP client from the fields, once.
func (c *Client) setup() (*url.URL, *http.Client, error) {
	c.once.Do(func() { c.base, c.hc, c.err = c.transport() })
	return c.base, c.hc, c.err
}

func (c *Client) transport() (*url.URL, *http.Client, error) {
	raw := strings.TrimSpace(c.BaseURL)
	if raw == "" {
		raw = DefaultURL
	}
	home, _ := os.UserHomeDir()
	if sock, ok := SocketPath(raw, home); ok {
		base, _ := url.Parse(socketBase)
		return base, unixClient(c.HTTPClient, sock), nil
	}
	if !strings.Contains(raw, "://") {
		raw = "http://" + raw
	}
	base, err := url.Parse(raw)
	if err != nil {
		return nil, nil, fmt.Errorf("parse base URL: %w", err)
	}
	if (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return nil, nil, fmt.Errorf("base URL %q: want http(s)://host[:port] or a unix socket path", c.BaseURL)
	}
	hc := c.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	return base, hc, nil
}

// unixClient returns a copy of hc (or a new client) whose transport dials
// the socket at path for every request.
func unixClient(hc *http.Client, path string) *http.Client {
	var out http.Client
	if hc != nil {
		out = *hc
	}
	out.Transport = &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
		MaxIdleConns:    10,
		IdleConnTimeout: http.DefaultTransport.(*http.Transport).IdleConnTimeout,
	}
	return &out
}

// escapePath joins path segments into an escaped absolute path. A segment
// must be non-empty and not "." or "..", so a caller's name can never
// address a different endpoint.
func escapePath(segs ...string) (string, error) {
	var b strings.Builder
	for _, s := range segs {
		if s == "" || s == "." || s == ".." {
			return "", fmt.Errorf("%w: empty or relative name %q in request path", api.ErrInvalid, s)
		}
		b.WriteByte('/')
		b.WriteString(url.PathEscape(s))
	}
	return b.String(), nil
}

// do sends one request to the escaped path under the base URL and returns
// the response when its status is 2xx. Any other status is returned as an
// *api.Error and the body is closed.
func (c *Client) do(ctx context.Context, method, path string, q url.Values, body io.Reader, contentType string) (*http.Response, error) {
	var hdr http.Header
	if contentType != "" {
		hdr = http.Header{"Content-Type": {contentType}}
	}
	return c.doHeader(ctx, method, path, q, body, hdr)
}

// doHeader is do with any request headers.
func (c *Client) doHeader(ctx context.Context, method, path string, q url.Values, body io.Reader, hdr http.Header) (*http.Response, error) {
	u, hc, err := c.endpoint(path, q)
	if err != nil {
		return nil, err
	}
	escaped := u.RawPath
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("build %s %s request: %w", method, path, err)
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	if c.UserAgent != "" {
		req.Header.Set("User-Agent", c.UserAgent)
	}
	for k, v := range hdr {
		req.Header[http.CanonicalHeaderKey(k)] = v
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		defer resp.Body.Close()
		return nil, responseError(method, escaped, resp)
	}
	return resp, nil
}

// endpoint returns the URL of an escaped path under the base URL, with the
// query q, and the HTTP client to reach it.
func (c *Client) endpoint(path string, q url.Values) (*url.URL, *http.Client, error) {
	base, hc, err := c.setup()
	if err != nil {
		return nil, nil, err
	}
	u := *base
	escaped := strings.TrimSuffix(base.EscapedPath(), "/") + path
	if u.Path, err = url.PathUnescape(escaped); err != nil {
		return nil, nil, fmt.Errorf("%w: request path %q: %v", api.ErrInvalid, escaped, err)
	}
	u.RawPath = escaped
	u.RawQuery = q.Encode()
	return &u, hc, nil
}

// authHeader returns the Authorization and User-Agent headers of c.
func (c *Client) authHeader() http.Header {
	h := http.Header{}
	if c.Token != "" {
		h.Set("Authorization", "Bearer "+c.Token)
	}
	if c.UserAgent != "" {
		h.Set("User-Agent", c.UserAgent)
	}
	return h
}

// responseError turns a non-2xx response into an *api.Error, taking the
// message from a JSON {"error":...} body, or else the raw body.
func responseError(method, path string, resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	e := &api.Error{Method: method, Path: path, StatusCode: resp.StatusCode}
	var body api.ErrorResponse
	if json.Unmarshal(b, &body) == nil && body.Error != "" {
		e.Message = body.Error
	} else {
		e.Message = strings.TrimSpace(string(b))
	}
	if e.Message == "" {
		e.Message = "no response body"
	}
	return e
}

// doJSON sends in (when non-nil) as a JSON body and decodes a JSON
// response into out (when non-nil; a 204 leaves it untouched).
func (c *Client) doJSON(ctx context.Context, method, path string, q url.Values, in, out any) error {
	var body io.Reader
	contentType := ""
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode %s %s request: %w", method, path, err)
		}
		body, contentType = bytes.NewReader(b), "application/json"
	}
	resp, err := c.do(ctx, method, path, q, body, contentType)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil || resp.StatusCode == http.StatusNoContent {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decode %s %s response: %w", method, path, err)
	}
	return nil
}

// call is doJSON for a path made of segments.
func (c *Client) call(ctx context.Context, method string, q url.Values, in, out any, segs ...string) error {
	path, err := escapePath(segs...)
	if err != nil {
		return err
	}
	return c.doJSON(ctx, method, path, q, in, out)
}
