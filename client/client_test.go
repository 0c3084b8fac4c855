package client

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/openslicer/openslicer/api"
)

func TestSocketPath(t *testing.T) {
	tests := []struct {
		in       string
		wantPath string
		wantOK   bool
	}{
		{"/run/slicer/slicer.sock", "/run/slicer/slicer.sock", true},
		{"  /var/run/api  ", "/var/run/api", true},
		{"unix:///run/x.sock", "/run/x.sock", true},
		{"./slicer.sock", "./slicer.sock", true},
		{"../a/b", "../a/b", true},
		{"~/slicer-mac/slicer.sock", "/home/u/slicer-mac/slicer.sock", true},
		{"unix://~/s", "/home/u/s", true},
		{"slicer.sock", "slicer.sock", true},
		{"http://127.0.0.1:8080", "", false},
		{"https://slicer.example.com/api", "", false},
		{"localhost:8080", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		gotPath, gotOK := SocketPath(tt.in, "/home/u")
		if gotPath != tt.wantPath || gotOK != tt.wantOK {
			t.Errorf("SocketPath(%q) = %q, %v; want %q, %v", tt.in, gotPath, gotOK, tt.wantPath, tt.wantOK)
		}
	}
}

// recorder is a test server handler that remembers the last request.
type recorder struct {
	method, path, rawQuery, host, auth, ua, contentType string
	status                                              int
	body                                                string
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec.method, rec.path, rec.rawQuery = r.Method, r.URL.EscapedPath(), r.URL.RawQuery
	rec.host, rec.auth, rec.ua = r.Host, r.Header.Get("Authorization"), r.UserAgent()
	rec.contentType = r.Header.Get("Content-Type")
	status := rec.status
	if status == 0 {
		status = http.StatusOK
	}
	w.WriteHeader(status)
	_, _ = w.Write([]byte(rec.body))
}

func TestAuthHeaderOnlyWithToken(t *testing.T) {
	rec := &recorder{body: `{"version":"1.2.3"}`}
	srv := httptest.NewServer(rec)
	t.Cleanup(srv.Close)

	for _, tt := range []struct{ token, wantAuth string }{{"", ""}, {"s3cret", "Bearer s3cret"}} {
		c := New(srv.URL, tt.token)
		info, err := c.Info(context.Background())
		if err != nil {
			t.Fatalf("Info() with token %q: %v", tt.token, err)
		}
		if info.Version != "1.2.3" {
			t.Errorf("Info().Version = %q, want 1.2.3", info.Version)
		}
		if rec.auth != tt.wantAuth {
			t.Errorf("token %q: Authorization = %q, want %q", tt.token, rec.auth, tt.wantAuth)
		}
		if rec.ua != DefaultUserAgent {
			t.Errorf("User-Agent = %q, want %q", rec.ua, DefaultUserAgent)
		}
	}
}

func TestBasePathPrefixKept(t *testing.T) {
	rec := &recorder{body: `[]`}
	srv := httptest.NewServer(rec)
	t.Cleanup(srv.Close)

	c := New(srv.URL+"/slicer/", "")
	if _, err := c.GroupNodes(context.Background(), "my group", ListOptions{Tag: "name=a&b"}); err != nil {
		t.Fatalf("GroupNodes: %v", err)
	}
	if want := "/slicer/hostgroup/my%20group/nodes"; rec.path != want {
		t.Errorf("path = %q, want %q", rec.path, want)
	}
	if want := "tag=name%3Da%26b"; rec.rawQuery != want {
		t.Errorf("query = %q, want %q", rec.rawQuery, want)
	}
}

func TestErrorMapping(t *testing.T) {
	tests := []struct {
		name     string
		status   int
		body     string
		wantMsg  string
		wantIs   error
		wantCode int
	}{
		{"json 404", 404, `{"error":"vm \"x\" not found"}`, `vm "x" not found`, api.ErrNotFound, 404},
		{"text 409", 409, "already exists\n", "already exists", api.ErrAlreadyExists, 409},
		{"empty 401", 401, "", "no response body", api.ErrUnauthorized, 401},
		{"json without error field", 400, `{"code":"x"}`, `{"code":"x"}`, api.ErrInvalid, 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(&recorder{status: tt.status, body: tt.body})
			t.Cleanup(srv.Close)
			_, err := New(srv.URL, "").Describe(context.Background(), "x")
			var apiErr *api.Error
			if !errors.As(err, &apiErr) {
				t.Fatalf("Describe() error = %v (%T), want *api.Error", err, err)
			}
			want := &api.Error{Method: "GET", Path: "/vm/x", StatusCode: tt.wantCode, Message: tt.wantMsg}
			if diff := cmp.Diff(want, apiErr); diff != "" {
				t.Errorf("error mismatch (-want +got):\n%s", diff)
			}
			if !errors.Is(err, tt.wantIs) {
				t.Errorf("errors.Is(%v, %v) = false", err, tt.wantIs)
			}
		})
	}
}

func TestUnixSocket(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "api.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Skipf("unix sockets unavailable: %v", err)
	}
	rec := &recorder{body: `[{"name":"vm","count":1}]`}
	srv := httptest.NewUnstartedServer(rec)
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)

	for _, base := range []string{sock, "unix://" + sock} {
		c := New(base, "")
		groups, err := c.HostGroups(context.Background())
		if err != nil {
			t.Fatalf("HostGroups() over %q: %v", base, err)
		}
		if diff := cmp.Diff([]api.HostGroup{{Name: "vm", Count: 1}}, groups); diff != "" {
			t.Errorf("HostGroups() mismatch (-want +got):\n%s", diff)
		}
		if rec.host != "unix" || rec.path != "/hostgroup" {
			t.Errorf("request host %q path %q, want unix /hostgroup", rec.host, rec.path)
		}
	}
}

func TestFromEnv(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("  from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	emptyFile := filepath.Join(dir, "empty")
	if err := os.WriteFile(emptyFile, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		env       map[string]string
		wantURL   string
		wantToken string
		wantErr   bool
	}{
		{"defaults", nil, DefaultURL, "", false},
		{"token wins over file", map[string]string{"SLICER_URL": "/run/s.sock", "SLICER_TOKEN": "t", "SLICER_TOKEN_FILE": tokenFile}, "/run/s.sock", "t", false},
		{"file trimmed", map[string]string{"SLICER_TOKEN_FILE": tokenFile}, DefaultURL, "from-file", false},
		{"empty file", map[string]string{"SLICER_TOKEN_FILE": emptyFile}, "", "", true},
		{"missing file", map[string]string{"SLICER_TOKEN_FILE": filepath.Join(dir, "nope")}, "", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := fromEnv(func(k string) string { return tt.env[k] })
			if (err != nil) != tt.wantErr {
				t.Fatalf("fromEnv() error = %v, want error %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if c.BaseURL != tt.wantURL || c.Token != tt.wantToken {
				t.Errorf("fromEnv() = %q, %q; want %q, %q", c.BaseURL, c.Token, tt.wantURL, tt.wantToken)
			}
		})
	}
}

func TestBadBaseURL(t *testing.T) {
	c := New("ftp://example.com", "")
	if _, err := c.Info(context.Background()); err == nil {
		t.Fatal("Info() with an ftp base URL succeeded, want error")
	}
}

func TestEmptyNameRejected(t *testing.T) {
	rec := &recorder{}
	srv := httptest.NewServer(rec)
	t.Cleanup(srv.Close)
	for _, name := range []string{"", "..", "."} {
		_, err := New(srv.URL, "").Health(context.Background(), name)
		if !errors.Is(err, api.ErrInvalid) {
			t.Errorf("Health(%q) error = %v, want ErrInvalid", name, err)
		}
	}
	if rec.method != "" {
		t.Errorf("server saw a %s %s request, want none", rec.method, rec.path)
	}
}
