package pid1

import (
	"errors"
	"strings"
	"testing"
)

func TestChooseInit(t *testing.T) {
	const sd = "/usr/lib/systemd/systemd"
	tests := []struct {
		name, param, sbin string
		have              []string
		want              string
		wantErr           bool
	}{
		{name: "systemd image (Debian's /sbin/init)", sbin: sd, want: sd},
		{name: "busybox image", sbin: "/bin/busybox"},
		{name: "no /sbin/init (most container images)"},
		{name: "systemd installed but not init: the agent stays", have: []string{"/lib/systemd/systemd"}},
		{name: "forced off", param: "agent", sbin: sd},
		{name: "forced on, /sbin/init is systemd", param: "systemd", sbin: sd, want: sd},
		{name: "forced on, systemd elsewhere", param: "systemd", sbin: "/bin/busybox", have: []string{"/lib/systemd/systemd"}, want: "/lib/systemd/systemd"},
		{name: "forced on, no systemd", param: "systemd", sbin: "/bin/busybox", wantErr: true},
		{name: "unknown value", param: "openrc", sbin: sd, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			exists := func(p string) bool {
				for _, h := range tt.have {
					if h == p {
						return true
					}
				}
				return false
			}
			got, err := chooseInit(tt.param, tt.sbin, exists)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("chooseInit(%q, %q) = %q, %v; want %q (error %v)", tt.param, tt.sbin, got, err, tt.want, tt.wantErr)
			}
			var ie initError
			if err != nil && (!errors.As(err, &ie) || !strings.Contains(err.Error(), "the agent stays PID 1")) {
				t.Errorf("error %q does not say what happens", err)
			}
		})
	}
}

func TestHostsWithName(t *testing.T) {
	tests := []struct {
		name, in, want string
		changed        bool
	}{
		{
			name:    "debian image: the image's own name is replaced",
			in:      "127.0.0.1\tlocalhost\n127.0.1.1\tdebian\n::1\tlocalhost ip6-localhost\n",
			want:    "127.0.0.1\tlocalhost\n127.0.1.1\tvm-1\n::1\tlocalhost ip6-localhost\n",
			changed: true,
		},
		{
			name:    "no line for it: one is added",
			in:      "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback",
			want:    "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\tvm-1\n",
			changed: true,
		},
		{name: "no file", in: "", want: "127.0.1.1\tvm-1\n", changed: true},
		{
			name: "named already, on any line",
			in:   "127.0.0.1 localhost\n10.0.0.2 vm-1 vm-1.local\n",
			want: "127.0.0.1 localhost\n10.0.0.2 vm-1 vm-1.local\n",
		},
		{
			name:    "a comment naming it does not count, nor does an address",
			in:      "# vm-1 lives here\nvm-1 other\n",
			want:    "# vm-1 lives here\nvm-1 other\n127.0.1.1\tvm-1\n",
			changed: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, changed := hostsWithName([]byte(tt.in), "vm-1")
			if string(got) != tt.want || changed != tt.changed {
				t.Errorf("hostsWithName(%q) = %q, %v; want %q, %v", tt.in, got, changed, tt.want, tt.changed)
			}
		})
	}
}

// TestAgentUnit: the unit runs the binary PID 1 copies, as the service
// subcommand, enabled for the target its symlink is made in.
func TestAgentUnit(t *testing.T) {
	u := agentUnit()
	for _, want := range []string{
		"ExecStart=" + agentBinary + " service\n",
		"WantedBy=multi-user.target\n",
		"DefaultDependencies=no\n",
		"Conflicts=shutdown.target\n",
		"KillMode=process\n",
		"Restart=always\n",
	} {
		if !strings.Contains(u, want) {
			t.Errorf("unit lacks %q:\n%s", want, u)
		}
	}
	// Ordered after nothing, so that it starts with systemd's first jobs.
	if strings.Contains(u, "After=") {
		t.Errorf("unit waits for something:\n%s", u)
	}
	if !strings.HasSuffix(unitWants, "/multi-user.target.wants") {
		t.Errorf("the unit is enabled in %s, not for multi-user.target", unitWants)
	}
}
