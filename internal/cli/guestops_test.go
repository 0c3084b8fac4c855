package cli

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openslicer/openslicer/api"
)

func TestPlanCp(t *testing.T) {
	for _, tc := range []struct {
		src, dst string
		want     cpPlan
		wantErr  bool
	}{
		{"./a.txt", "vm-1:/tmp/", cpPlan{Upload: true, VM: "vm-1", Remote: "/tmp/", Local: "./a.txt"}, false},
		{"vm-1:~/out", ".", cpPlan{VM: "vm-1", Remote: "~/out", Local: "."}, false},
		{"/abs/x:y", "vm-1:/tmp", cpPlan{Upload: true, VM: "vm-1", Remote: "/tmp", Local: "/abs/x:y"}, false},
		{"a", "b", cpPlan{}, true},
		{"vm-1:/a", "vm-2:/b", cpPlan{}, true},
		{"a", "vm-1:", cpPlan{}, true},
	} {
		got, err := planCp(tc.src, tc.dst)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("planCp(%q, %q) = %+v, %v; want %+v (error %t)", tc.src, tc.dst, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"4M": 4 << 20, "4MiB": 4 << 20, "512k": 512 << 10, "1G": 1 << 30, "100": 100, "10B": 10} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "x", "-1", "4T"} {
		if _, err := parseSize(bad); !errors.Is(err, api.ErrInvalid) {
			t.Errorf("parseSize(%q) = %v, want ErrInvalid", bad, err)
		}
	}
}

// guestFake answers the secrets and background-exec endpoints and records
// every request with its body.
func guestFake(t *testing.T) (*httptest.Server, *[]string) {
	var seen []string
	mux := http.NewServeMux()
	record := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			seen = append(seen, strings.TrimSpace(r.Method+" "+r.URL.RequestURI()+" "+string(b)))
			h(w, r)
		}
	}
	mux.HandleFunc("POST /secrets", record(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(201) }))
	mux.HandleFunc("PATCH /secrets/{n}", record(func(w http.ResponseWriter, r *http.Request) {}))
	mux.HandleFunc("GET /secrets", record(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode([]api.Secret{{Name: "db", Size: 5, Permissions: "0600", UID: 1000}})
	}))
	mux.HandleFunc("GET /nodes", record(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode([]api.Node{{Hostname: "vm-1", Tags: []string{"name=web"}}})
	}))
	mux.HandleFunc("POST /vm/{h}/exec", record(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(201)
		_ = json.NewEncoder(w).Encode(api.ExecBackgroundResponse{ExecID: "ex_7", PID: 9})
	}))
	mux.HandleFunc("GET /vm/{h}/exec/{id}/logs", record(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `{"id":1,"type":"gap","dropped_bytes":4,"dropped_frames":1,"exit_code":0}`+"\n"+
			`{"id":2,"type":"stdout","encoding":"base64","data":"b3V0Cg==","exit_code":0}`+"\n"+
			`{"id":3,"type":"stderr","encoding":"base64","data":"ZXJyCg==","exit_code":0}`+"\n")
	}))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, &seen
}

func TestSecretCommands(t *testing.T) {
	srv, seen := guestFake(t)
	if code, _, errOut := runCLI(t, strings.NewReader("s3cret"), "secret", "create", "db", "--url", srv.URL); code != 0 {
		t.Fatalf("create from stdin: %d %s", code, errOut)
	}
	if code, _, errOut := runCLI(t, nil, "secret", "create", "k", "--from-literal", "v", "--uid", "1000", "--permissions", "0640", "--url", srv.URL); code != 0 {
		t.Fatalf("create from literal: %d %s", code, errOut)
	}
	if code, _, errOut := runCLI(t, nil, "secret", "update", "k", "--permissions", "0600", "--url", srv.URL); code != 0 {
		t.Fatalf("update: %d %s", code, errOut)
	}
	code, out, _ := runCLI(t, nil, "secret", "list", "-v", "--url", srv.URL)
	if code != 0 || !strings.Contains(out, "db") || !strings.Contains(out, "0600") {
		t.Errorf("list: %d %q", code, out)
	}
	want := []string{
		`POST /secrets {"name":"db","data":"czNjcmV0","permissions":"0600"}`,
		`POST /secrets {"name":"k","data":"dg==","permissions":"0640","uid":1000}`,
		`PATCH /secrets/k {"permissions":"0600"}`,
		`GET /secrets`,
	}
	if diff := cmp.Diff(want, *seen); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
}

func TestBgExecFollow(t *testing.T) {
	srv, seen := guestFake(t)
	code, out, errOut := runCLI(t, nil, "bg", "exec", "web", "--url", srv.URL, "--ring-bytes", "4M", "--follow", "--", "sh", "-c", "x")
	if code != 0 {
		t.Fatalf("bg exec: %d %s", code, errOut)
	}
	if out != "exec_id=ex_7 pid=9\nout\n" {
		t.Errorf("stdout = %q", out)
	}
	if !strings.Contains(errOut, "output dropped: 4 bytes in 1 frames") || !strings.Contains(errOut, "err\n") {
		t.Errorf("stderr = %q", errOut)
	}
	want := []string{
		"GET /nodes",
		"POST /vm/vm-1/exec?args=-c&args=x&background=true&cmd=sh&ring_bytes=4194304&stdio=base64",
		"GET /vm/vm-1/exec/ex_7/logs?follow=true",
	}
	if diff := cmp.Diff(want, *seen); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
}
