package e2e

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/client"
	"github.com/openslicer/openslicer/internal/testenv"
)

// watchdogGroups are two groups whose guests never come up. Neither has
// an init (rdinit names a missing file and there is no root= to fall back
// on), so the kernel panics. "silent" prints nothing: loglevel=0 keeps
// every kernel message, the panic's too, off the console, and panic=0
// makes the panic hang forever. (console=ttyS1 is not enough: the
// daemon's console=ttyS0 stays a console, and the panic reaches it.)
// "panics" panics aloud, and with the daemon's panic=-1 and QEMU's
// -no-reboot its machine exits.
const watchdogGroups = `  - name: silent
    count: 0
    vcpu: 1
    ram_mb: 256
    storage_size: 1G
    kernel_args: "loglevel=0 rdinit=/nonexistent panic=0"
  - name: panics
    count: 0
    vcpu: 1
    ram_mb: 256
    storage_size: 1G
    kernel_args: "rdinit=/nonexistent"
`

// TestBootWatchdog: the daemon reports its accelerator, and a guest that
// is silent, or whose machine exits, fails its create with a 502 that
// explains it (instead of a 408 after the wait's timeout), with nothing
// left behind.
func TestBootWatchdog(t *testing.T) {
	testenv.RequireE2E(t)
	t.Parallel()
	d := startDaemonWith(t, daemonSpec{groups: watchdogGroups, extra: "  boot_watchdog: 10s\n"})
	c, ctx := d.client, context.Background()

	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if (info.Accelerator != "kvm" && info.Accelerator != "tcg") || info.AcceleratorReason == "" {
		t.Fatalf("GET /info accelerator = %q (%q), want kvm or tcg with a reason", info.Accelerator, info.AcceleratorReason)
	}
	if metrics := d.apiGet(t, "/metrics"); !strings.Contains(metrics, `slicer_accelerator{accel="`+info.Accelerator+`"} 1`) {
		t.Errorf("/metrics has no slicer_accelerator gauge for %s", info.Accelerator)
	}

	for _, tt := range []struct {
		group string
		want  []string
	}{
		{"silent", []string{`vm "silent-1": guest did not boot`, "printed nothing on its console within 10s (boot watchdog; accelerator " + info.Accelerator + ")", "last console lines:\n  (none)"}},
		{"panics", []string{`vm "panics-1": guest did not boot`, "its machine exited before the agent was ready (accelerator " + info.Accelerator + ")", "Kernel panic - not syncing"}},
	} {
		t.Run(tt.group, func(t *testing.T) {
			// The wait's own timeout is far longer than the watchdog's bound:
			// without the watchdog this would be a 408 after 3 minutes.
			_, err := c.CreateNode(ctx, tt.group, api.CreateNodeRequest{}, client.CreateOptions{Wait: "agent", Timeout: 3 * time.Minute})
			var ae *api.Error
			if !errors.As(err, &ae) || ae.StatusCode != http.StatusBadGateway || !errors.Is(err, api.ErrBootFailed) {
				t.Fatalf("create in %s = %v, want 502 from the boot watchdog", tt.group, err)
			}
			for _, want := range tt.want {
				if !strings.Contains(ae.Message, want) {
					t.Errorf("error %q does not contain %q", ae.Message, want)
				}
			}
			if nodes, err := c.GroupNodes(ctx, tt.group, client.ListOptions{}); err != nil || len(nodes) != 0 {
				t.Errorf("vms left in %s: %+v, %v", tt.group, nodes, err)
			}
			d.assertNothingLeft(t)
		})
	}
	// The console log is kept for the post-mortem.
	if _, err := os.Stat(filepath.Join(d.dataDir, "logs", "panics-1.txt")); err != nil {
		t.Errorf("console log of the failed vm: %v", err)
	}
}

// apiGet GETs path from the daemon's API with its token and returns the body.
func (d *daemon) apiGet(t *testing.T, path string) string {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", d.socket)
		},
	}}
	req, err := http.NewRequest(http.MethodGet, "http://slicer"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+d.token)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
	}
	return string(b)
}
