package cli

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/openslicer/openslicer/api"
)

// testGlobals returns globals with buffered IO, an empty environment, no
// default token file and UTC times.
func testGlobals(in io.Reader) (*globals, *bytes.Buffer, *bytes.Buffer) {
	var out, errOut bytes.Buffer
	g := &globals{
		io:     IO{In: in, Out: &out, Err: &errOut},
		getenv: func(string) string { return "" },
		loc:    time.UTC,
	}
	return g, &out, &errOut
}

// runCLI runs the root command with args through Main.
func runCLI(t *testing.T, in io.Reader, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	g, out, errOut := testGlobals(in)
	root := newRoot(g)
	root.SetArgs(args)
	code = Main(root, g.io)
	return code, out.String(), errOut.String()
}

func TestListTable(t *testing.T) {
	_, srv := newFakeAPI(t)
	for _, args := range [][]string{
		{"vm", "list", "--url", srv.URL},
		{"ls", "--url", srv.URL},
		{"v", "ls", "task", "--url", srv.URL},
	} {
		code, out, errOut := runCLI(t, nil, args...)
		if code != 0 {
			t.Fatalf("%v: exit %d, stderr %q", args, code, errOut)
		}
		want := "" +
			"HOSTNAME  IP             RAM   CPUS  STATUS              CREATED              TAGS\n" +
			"--------  --             ---   ----  ------              -------              ----\n" +
			"task-1    192.168.138.2  2GiB  1     Running             2026-02-27 16:30:53  -\n" +
			"task-2    192.168.138.3  4GiB  2     Paused (suspended)  2026-02-27 16:31:53  name=web,role=api\n"
		if diff := cmp.Diff(want, out); diff != "" {
			t.Errorf("%v output mismatch (-want +got):\n%s", args, diff)
		}
	}
}

func TestListJSON(t *testing.T) {
	_, srv := newFakeAPI(t)
	code, out, _ := runCLI(t, nil, "vm", "list", "--json", "--url", srv.URL)
	if code != 0 || !strings.Contains(out, `"hostname": "task-2"`) {
		t.Errorf("vm list --json = %d, %q", code, out)
	}
	code, out, _ = runCLI(t, nil, "vm", "list", "nogroup", "--json", "--url", srv.URL)
	if code != 0 || out != "[]\n" {
		t.Errorf("vm list nogroup --json = %d, %q; want [] for no VMs", code, out)
	}
}

func TestAddOutput(t *testing.T) {
	f, srv := newFakeAPI(t)
	code, out, errOut := runCLI(t, nil, "vm", "add", "--url", srv.URL, "--tag", "role=ci", "--name", "builder", "--persistent")
	if code != 0 {
		t.Fatalf("vm add: exit %d, stderr %q", code, errOut)
	}
	want := "VM created\n" +
		"  Hostname: task-3\n" +
		"  Group:    task\n" +
		"  IP:       192.168.138.4/24\n" +
		"  Specs:    1 vCPU, 2GB RAM, GPUs: 0\n" +
		"  Persistent: true\n" +
		"  Created:  2025-09-09T09:45:27+01:00\n"
	if diff := cmp.Diff(want, out); diff != "" {
		t.Errorf("vm add output mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"role=ci", "name=builder"}, f.created.Tags); diff != "" {
		t.Errorf("created tags mismatch (-want +got):\n%s", diff)
	}
	// The group was found through GET /hostgroup since none was given.
	if diff := cmp.Diff([]string{"GET /hostgroup", "POST /hostgroup/task/nodes", "GET /hostgroup"}, f.seen()); diff != "" {
		t.Errorf("requests mismatch (-want +got):\n%s", diff)
	}
}

func TestAddJSONWithSpecs(t *testing.T) {
	f, srv := newFakeAPI(t)
	code, out, errOut := runCLI(t, nil, "vm", "launch", "task", "--url", srv.URL, "--cpus", "2", "--ram-mb", "512", "--wait", "--timeout", "90s", "--json")
	if code != 0 {
		t.Fatalf("vm launch: exit %d, stderr %q", code, errOut)
	}
	if !strings.Contains(out, `"hostname": "task-3"`) {
		t.Errorf("vm launch --json output %q lacks the hostname", out)
	}
	if diff := cmp.Diff([]string{"POST /hostgroup/task/nodes?timeout=1m30s&wait=agent"}, f.seen()); diff != "" {
		t.Errorf("requests mismatch (-want +got):\n%s", diff)
	}
	if f.created.CPUs != 2 || f.created.RamBytes != 512<<20 {
		t.Errorf("created cpus %d ram %d, want 2 and 512MiB", f.created.CPUs, f.created.RamBytes)
	}
}

func TestExecExitCode(t *testing.T) {
	f, srv := newFakeAPI(t)
	tests := []struct {
		name             string
		args             []string
		in               io.Reader
		wantCode         int
		wantOut, wantErr string
		wantExecQuery    string
	}{
		{
			name: "success", args: []string{"vm", "exec", "task-1", "--", "echo", "hello", "world"},
			wantOut: "hello world\n", wantExecQuery: "args=hello&args=world&cmd=echo&stdio=base64",
		},
		{
			name: "remote exit code", args: []string{"vm", "exec", "task-1", "--uid", "0", "--", "fail", "3"},
			wantCode: 3, wantErr: "boom\n", wantExecQuery: "args=3&cmd=fail&stdio=base64&uid=0",
		},
		{
			name: "cannot start", args: []string{"vm", "exec", "task-1", "missing"},
			wantCode: 127, wantErr: "slicer: exec: \"missing\": executable file not found in $PATH\n",
			wantExecQuery: "cmd=missing&stdio=base64",
		},
		{
			name: "stdin piped", args: []string{"vm", "exec", "web", "cat"}, in: strings.NewReader("piped\x00data"),
			wantOut: "piped\x00data", wantExecQuery: "cmd=cat&stdin=true&stdio=base64",
		},
		{
			name: "shell joins words", args: []string{"vm", "exec", "task-1", "--shell", "/bin/sh", "--", "fail", "7"},
			wantCode: 99, wantErr: "unknown test command \"fail 7\"\n", wantExecQuery: "cmd=fail+7&shell=%2Fbin%2Fsh&stdio=base64",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"vm", "exec", "--url", srv.URL}, tt.args[2:]...)
			code, out, errOut := runCLI(t, tt.in, args...)
			if code != tt.wantCode || out != tt.wantOut || errOut != tt.wantErr {
				t.Errorf("exit %d stdout %q stderr %q; want %d %q %q", code, out, errOut, tt.wantCode, tt.wantOut, tt.wantErr)
			}
			reqs := f.seen()
			if len(reqs) == 0 {
				t.Fatal("no requests reached the server")
			}
			last := reqs[len(reqs)-1]
			if _, query, _ := strings.Cut(last, "?"); query != tt.wantExecQuery {
				t.Errorf("last request %q, want exec query %q", last, tt.wantExecQuery)
			}
		})
	}
}

func TestExecNameFallback(t *testing.T) {
	f, srv := newFakeAPI(t)
	code, out, errOut := runCLI(t, nil, "vm", "exec", "web", "--url", srv.URL, "--", "echo", "hi")
	if code != 0 || out != "hi\n" {
		t.Fatalf("vm exec web = %d %q %q", code, out, errOut)
	}
	want := []string{
		"POST /vm/web/exec?args=hi&cmd=echo&stdio=base64",
		"GET /nodes?tag=name%3Dweb",
		"POST /vm/task-2/exec?args=hi&cmd=echo&stdio=base64",
	}
	if diff := cmp.Diff(want, f.seen()); diff != "" {
		t.Errorf("requests mismatch (-want +got):\n%s", diff)
	}
}

func TestDeleteResolvesGroup(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"by hostname", []string{"task-1"}, []string{"GET /nodes", "DELETE /hostgroup/task/nodes/task-1"}},
		{"by friendly name", []string{"web"}, []string{"GET /nodes", "DELETE /hostgroup/task/nodes/task-2"}},
		{"group given, name falls back", []string{"web", "task"}, []string{"DELETE /hostgroup/task/nodes/web", "GET /nodes?tag=name%3Dweb", "DELETE /hostgroup/task/nodes/task-2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, srv := newFakeAPI(t)
			code, out, errOut := runCLI(t, nil, append([]string{"vm", "delete", "--url", srv.URL}, tt.args...)...)
			if code != 0 || !strings.HasPrefix(out, "Deleted ") {
				t.Fatalf("vm delete %v = %d %q %q", tt.args, code, out, errOut)
			}
			if diff := cmp.Diff(tt.want, f.seen()); diff != "" {
				t.Errorf("requests mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDeleteUnknown(t *testing.T) {
	_, srv := newFakeAPI(t)
	code, _, errOut := runCLI(t, nil, "vm", "delete", "nope", "--url", srv.URL)
	if code != 1 || !strings.HasPrefix(errOut, "slicer: ") || !strings.Contains(errOut, "not found") {
		t.Errorf("vm delete nope = %d, stderr %q; want 1 and a not-found message", code, errOut)
	}
}

func TestLogsHealthInfoPause(t *testing.T) {
	_, srv := newFakeAPI(t)
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"vm", "logs", "web", "--lines", "0"}, "boot\nready\n"},
		{[]string{"vm", "health", "task-1"}, "" +
			"Hostname:      task-1\n" +
			"IP:            192.168.138.2\n" +
			"Agent version: 0.9.0\n" +
			"Agent uptime:  1m30s\n" +
			"System uptime: 1h0m0s\n" +
			"Userdata:      ran, exit code 0\n"},
		{[]string{"info"}, "Client version:  dev\nServer version:  0.9.0 (abc123)\nServer platform: linux/amd64\nAccelerator:     tcg (this host has no /dev/kvm)\n"},
		{[]string{"vm", "pause", "web"}, "Paused task-2\n"},
	}
	for _, tt := range tests {
		code, out, errOut := runCLI(t, nil, append(tt.args, "--url", srv.URL)...)
		if code != 0 {
			t.Errorf("%v: exit %d, stderr %q", tt.args, code, errOut)
		}
		if diff := cmp.Diff(tt.want, out); diff != "" {
			t.Errorf("%v output mismatch (-want +got):\n%s", tt.args, diff)
		}
	}
}

func TestTokenSent(t *testing.T) {
	f, srv := newFakeAPI(t)
	if code, _, errOut := runCLI(t, nil, "vm", "group", "--url", srv.URL, "--token", "t0k"); code != 0 {
		t.Fatalf("vm group: %s", errOut)
	}
	if code, _, errOut := runCLI(t, nil, "vm", "group", "--url", srv.URL); code != 0 {
		t.Fatalf("vm group: %s", errOut)
	}
	if diff := cmp.Diff([]string{"Bearer t0k", ""}, f.auth); diff != "" {
		t.Errorf("Authorization headers mismatch (-want +got):\n%s", diff)
	}
}

func TestMainErrors(t *testing.T) {
	code, out, errOut := runCLI(t, nil, "vm", "frobnicate")
	if code != 1 || out != "" || !strings.HasPrefix(errOut, "slicer: ") {
		t.Errorf("unknown command = %d %q %q; want 1 and a slicer: message", code, out, errOut)
	}
	code, _, errOut = runCLI(t, nil, "vm", "add", "--ram-gb", "1", "--ram-mb", "5")
	if code != 1 || !strings.Contains(errOut, "ram-gb") {
		t.Errorf("exclusive flags = %d %q", code, errOut)
	}
}

func TestResolveConn(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	flagFile, envFile, defFile := write("flag", "from-flag-file\n"), write("env", "from-env-file"), write("def", " from-default ")
	missing := filepath.Join(dir, "missing")
	tests := []struct {
		name      string
		o         connOptions
		env       map[string]string
		def       string
		wantURL   string
		wantToken string
		wantErr   bool
	}{
		{"defaults", connOptions{}, nil, "", "http://127.0.0.1:8080", "", false},
		{"default token file", connOptions{}, nil, defFile, "http://127.0.0.1:8080", "from-default", false},
		{"unreadable default ignored", connOptions{}, nil, missing, "http://127.0.0.1:8080", "", false},
		{"env", connOptions{}, map[string]string{"SLICER_URL": "/run/slicer.sock", "SLICER_TOKEN": "env"}, defFile, "/run/slicer.sock", "env", false},
		{"env file", connOptions{}, map[string]string{"SLICER_TOKEN_FILE": envFile}, defFile, "http://127.0.0.1:8080", "from-env-file", false},
		{"flags beat env", connOptions{URL: "http://h:1", Token: "flag"}, map[string]string{"SLICER_URL": "x", "SLICER_TOKEN": "env"}, "", "http://h:1", "flag", false},
		{"flag file beats env token", connOptions{TokenFile: flagFile}, map[string]string{"SLICER_TOKEN": "env"}, "", "http://127.0.0.1:8080", "from-flag-file", false},
		{"missing flag file", connOptions{TokenFile: missing}, nil, "", "", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url, token, err := resolveConn(tt.o, func(k string) string { return tt.env[k] }, tt.def)
			if (err != nil) != tt.wantErr {
				t.Fatalf("resolveConn() error = %v, want error %v", err, tt.wantErr)
			}
			if !tt.wantErr && (url != tt.wantURL || token != tt.wantToken) {
				t.Errorf("resolveConn() = %q, %q; want %q, %q", url, token, tt.wantURL, tt.wantToken)
			}
		})
	}
}

// A daemon that does not report its accelerator (Slicer's) gets no
// accelerator line.
func TestWriteInfoWithoutAccelerator(t *testing.T) {
	var b strings.Builder
	if err := writeInfo(&b, "dev", &api.Info{Version: "0.9.0", Platform: "linux", Arch: "arm64"}); err != nil {
		t.Fatal(err)
	}
	if want := "Client version:  dev\nServer version:  0.9.0\nServer platform: linux/arm64\n"; b.String() != want {
		t.Errorf("writeInfo = %q, want %q", b.String(), want)
	}
}

// Each warm pool gets a line.
func TestWriteInfoPools(t *testing.T) {
	var b strings.Builder
	info := &api.Info{Version: "0.9.0", Platform: "linux", Arch: "amd64", Accelerator: "tcg",
		Pools: []api.PoolInfo{{HostGroup: "sbox", Ready: 1, Filling: 1, Target: 2}}}
	if err := writeInfo(&b, "dev", info); err != nil {
		t.Fatal(err)
	}
	if want := "Warm pool:       sbox: 1 ready, 1 filling, target 2\n"; !strings.HasSuffix(b.String(), want) {
		t.Errorf("writeInfo = %q, want it to end with %q", b.String(), want)
	}
}

func TestDaemonShutdown(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		request string
		out     string
	}{
		{[]string{"daemon", "shutdown"}, "POST /daemon/shutdown", "Daemon stopping\n"},
		{[]string{"daemon", "shutdown", "--detach"}, "POST /daemon/shutdown?detach=true", "Daemon stopping; persistent VMs left running\n"},
	} {
		f, srv := newFakeAPI(t)
		code, out, errOut := runCLI(t, nil, append(tc.args, "--url", srv.URL)...)
		if code != 0 || out != tc.out {
			t.Errorf("%v: exit %d, out %q, stderr %q", tc.args, code, out, errOut)
		}
		if len(f.requests) != 1 || f.requests[0] != tc.request {
			t.Errorf("%v sent %v, want %q", tc.args, f.requests, tc.request)
		}
	}
}
