package server

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestGuestRequest(t *testing.T) {
	tests := []struct {
		name       string
		method     string
		target     string
		body       string
		header     map[string]string
		wantQuery  string
		wantHeader map[string]string
		wantLength int64
	}{
		{
			name:       "upload keeps query, body and copy headers, drops auth",
			method:     http.MethodPost,
			target:     "/vm/a-1/cp?path=%2Ftmp%2Fx&mode=cp-v1-tar&exclude=a&exclude=b",
			body:       "tarbytes",
			header:     map[string]string{"Authorization": "Bearer t", "Content-Type": "application/x-tar", "X-Slicer-Unpacked-Size": "42", "User-Agent": "sdk"},
			wantQuery:  "path=%2Ftmp%2Fx&mode=cp-v1-tar&exclude=a&exclude=b",
			wantHeader: map[string]string{"Authorization": "", "User-Agent": "", "Content-Type": "application/x-tar", "X-Slicer-Unpacked-Size": "42"},
			wantLength: 8,
		},
		{
			name:       "watch keeps Accept and Last-Event-ID, no body",
			method:     http.MethodGet,
			target:     "/vm/a-1/fs/watch?paths=%2Ftmp",
			header:     map[string]string{"Accept": "text/event-stream", "Last-Event-ID": "7"},
			wantQuery:  "paths=%2Ftmp",
			wantHeader: map[string]string{"Accept": "text/event-stream", "Last-Event-ID": "7"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(tt.method, tt.target, strings.NewReader(tt.body))
			for k, v := range tt.header {
				r.Header.Set(k, v)
			}
			out, err := guestRequest(r, "/v1/cp")
			if err != nil {
				t.Fatal(err)
			}
			if out.Method != tt.method || out.URL.Path != "/v1/cp" || out.URL.RawQuery != tt.wantQuery {
				t.Errorf("request = %s %s?%s, want %s /v1/cp?%s", out.Method, out.URL.Path, out.URL.RawQuery, tt.method, tt.wantQuery)
			}
			for k, want := range tt.wantHeader {
				if got := out.Header.Get(k); got != want {
					t.Errorf("header %s = %q, want %q", k, got, want)
				}
			}
			if out.ContentLength != tt.wantLength {
				t.Errorf("ContentLength = %d, want %d", out.ContentLength, tt.wantLength)
			}
			if tt.body != "" {
				b, _ := io.ReadAll(out.Body)
				if string(b) != tt.body {
					t.Errorf("body = %q, want %q", b, tt.body)
				}
			}
		})
	}
}
