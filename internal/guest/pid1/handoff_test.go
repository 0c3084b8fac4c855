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
