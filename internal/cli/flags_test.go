package cli

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/cobra"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/client"
)

// parse runs cmd with args and reports whether its run function was called.
func parse(t *testing.T, cmd *cobra.Command, args []string) error {
	t.Helper()
	cmd.SetArgs(args)
	cmd.SetOut(io.Discard)
	cmd.SetErr(io.Discard)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	return cmd.ExecuteContext(context.Background())
}

func TestAddFlags(t *testing.T) {
	tests := []struct {
		name      string
		args      []string
		wantGroup string
		wantReq   api.CreateNodeRequest
		wantOpts  client.CreateOptions
		wantJSON  bool
		wantErr   bool
	}{
		{name: "defaults", args: nil},
		{
			name: "everything", args: []string{"task", "--tag", "a=b", "--tag", "c=d", "-n", "web", "--cpus", "2", "--ram-gb", "4", "--gpus", "1", "--persistent", "--userdata", "echo hi", "--json"},
			wantGroup: "task", wantJSON: true,
			wantReq: api.CreateNodeRequest{CPUs: 2, RamBytes: 4 << 30, GPUCount: 1, Persistent: true, Userdata: "echo hi", Tags: []string{"a=b", "c=d", "name=web"}},
		},
		{name: "ram in MiB", args: []string{"--ram-mb", "1536"}, wantReq: api.CreateNodeRequest{RamBytes: 1536 << 20}},
		{name: "wait default timeout", args: []string{"--wait"}, wantOpts: client.CreateOptions{Wait: "agent", Timeout: 5 * time.Minute}},
		{name: "wait userdata", args: []string{"--wait-userdata", "--timeout", "2m"}, wantOpts: client.CreateOptions{Wait: "userdata", Timeout: 2 * time.Minute}},
		{name: "timeout without wait is not sent", args: []string{"--timeout", "2m"}},
		{name: "two groups", args: []string{"a", "b"}, wantErr: true},
		{name: "both userdata flags", args: []string{"--userdata", "x", "--userdata-file", "f"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got *addOptions
			cmd := newAddCmd(&globals{}, func(_ context.Context, o *addOptions) error { got = o; return nil })
			err := parse(t, cmd, tt.args)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("vm add %v succeeded, want error", tt.args)
				}
				return
			}
			if err != nil {
				t.Fatalf("vm add %v: %v", tt.args, err)
			}
			req, opts := got.request(got.Userdata)
			if diff := cmp.Diff(tt.wantReq, req); diff != "" {
				t.Errorf("request mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantOpts, opts); diff != "" {
				t.Errorf("options mismatch (-want +got):\n%s", diff)
			}
			if got.Group != tt.wantGroup || got.JSON != tt.wantJSON {
				t.Errorf("group %q json %v, want %q %v", got.Group, got.JSON, tt.wantGroup, tt.wantJSON)
			}
		})
	}
}

func TestExecFlags(t *testing.T) {
	zero, thousand := uint32(0), uint32(1000)
	tests := []struct {
		name     string
		args     []string
		wantName string
		wantReq  *api.ExecRequest
		wantErr  bool
	}{
		{
			name: "direct exec", args: []string{"vm-1", "--", "ls", "-l", "/"}, wantName: "vm-1",
			wantReq: &api.ExecRequest{Command: "ls", Args: []string{"-l", "/"}, Stdio: "base64"},
		},
		{
			name: "no dash dash", args: []string{"vm-1", "uname"}, wantName: "vm-1",
			wantReq: &api.ExecRequest{Command: "uname", Args: []string{}, Stdio: "base64"},
		},
		{
			name: "uid zero is root", args: []string{"vm-1", "--uid", "0", "--gid", "1000", "--cwd", "/tmp", "--env", "A=1", "--env", "B=2", "--", "id"},
			wantName: "vm-1",
			wantReq:  &api.ExecRequest{Command: "id", Args: []string{}, UID: &zero, GID: &thousand, Cwd: "/tmp", Env: []string{"A=1", "B=2"}, Stdio: "base64"},
		},
		{
			name: "shell joins", args: []string{"vm-1", "--shell", "/bin/bash", "--", "ls", "-l", "|", "sort"}, wantName: "vm-1",
			wantReq: &api.ExecRequest{Command: "ls -l | sort", Shell: "/bin/bash", Stdio: "base64"},
		},
		{name: "no command", args: []string{"vm-1"}, wantErr: true},
		{name: "bad uid", args: []string{"vm-1", "--uid", "-1", "--", "id"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got *execOptions
			cmd := newExecCmd(&globals{}, func(_ context.Context, o *execOptions) error { got = o; return nil })
			err := parse(t, cmd, tt.args)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("vm exec %v succeeded, want error", tt.args)
				}
				return
			}
			if err != nil {
				t.Fatalf("vm exec %v: %v", tt.args, err)
			}
			if got.Name != tt.wantName {
				t.Errorf("name = %q, want %q", got.Name, tt.wantName)
			}
			if diff := cmp.Diff(tt.wantReq, got.request(false)); diff != "" {
				t.Errorf("request mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestExecStdinChoice(t *testing.T) {
	tests := []struct {
		name    string
		in      io.Reader
		noStdin bool
		want    bool
	}{
		{"nil input", nil, false, false},
		{"pipe-like reader", strings.NewReader("x"), false, true},
		{"--no-stdin", strings.NewReader("x"), true, false},
	}
	for _, tt := range tests {
		o := &execOptions{globals: &globals{io: IO{In: tt.in}}, NoStdin: tt.noStdin}
		if got := o.stdin() != nil; got != tt.want {
			t.Errorf("%s: stdin sent = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestSimpleFlags(t *testing.T) {
	t.Run("list", func(t *testing.T) {
		var got *listOptions
		cmd := newListCmd(&globals{}, func(_ context.Context, o *listOptions) error { got = o; return nil })
		if err := parse(t, cmd, []string{"task", "--json"}); err != nil {
			t.Fatal(err)
		}
		if got.Group != "task" || !got.JSON {
			t.Errorf("list options = %+v", *got)
		}
	})
	t.Run("delete", func(t *testing.T) {
		var got *deleteOptions
		cmd := newDeleteCmd(&globals{}, func(_ context.Context, o *deleteOptions) error { got = o; return nil })
		if err := parse(t, cmd, []string{"vm-1", "task"}); err != nil {
			t.Fatal(err)
		}
		if got.Name != "vm-1" || got.Group != "task" {
			t.Errorf("delete options = %+v", *got)
		}
		if err := parse(t, newDeleteCmd(&globals{}, nil), nil); err == nil {
			t.Error("vm delete without a name succeeded")
		}
	})
	t.Run("logs", func(t *testing.T) {
		var got *logsOptions
		cmd := newLogsCmd(&globals{}, func(_ context.Context, o *logsOptions) error { got = o; return nil })
		if err := parse(t, cmd, []string{"vm-1"}); err != nil {
			t.Fatal(err)
		}
		if got.Name != "vm-1" || got.Lines != 20 {
			t.Errorf("logs options = %+v, want lines 20 by default", *got)
		}
	})
	t.Run("restore", func(t *testing.T) {
		var got *lifecycleOptions
		var restore lifecycleOp
		for _, op := range lifecycleOps {
			if op.use == "restore" {
				restore = op
			}
		}
		cmd := newLifecycleCmd(&globals{}, restore, func(_ context.Context, o *lifecycleOptions) error { got = o; return nil })
		if err := parse(t, cmd, []string{"vm-1", "--wait", "--timeout", "30s"}); err != nil {
			t.Fatal(err)
		}
		if got.Name != "vm-1" || !got.Wait || got.Timeout != 30*time.Second {
			t.Errorf("restore options = %+v", *got)
		}
	})
}

func TestConnFlagsInherited(t *testing.T) {
	g, _, _ := testGlobals(nil)
	var got *listOptions
	vm := &cobra.Command{Use: "vm"}
	addConnFlags(vm, &g.conn)
	vm.AddCommand(newListCmd(g, func(_ context.Context, o *listOptions) error { got = o; return nil }))
	if err := parse(t, vm, []string{"list", "--url", "/run/s.sock", "--token", "t", "--token-file", "/f"}); err != nil {
		t.Fatal(err)
	}
	want := connOptions{URL: "/run/s.sock", Token: "t", TokenFile: "/f"}
	if diff := cmp.Diff(want, got.conn); diff != "" {
		t.Errorf("connection flags mismatch (-want +got):\n%s", diff)
	}
}
