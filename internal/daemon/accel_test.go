package daemon

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/openslicer/openslicer/api"
)

// A bad accelerator mode stops the daemon before it does anything, naming
// where the value came from and the accepted ones; the flag wins over the
// environment.
func TestRunRejectsBadAccel(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, tt := range []struct {
		flag, env, want string
	}{
		{"xen", "", `--accel: invalid argument: accelerator "xen": want one of auto, kvm, tcg`},
		{"", "fast", `SLICER_ACCEL: invalid argument: accelerator "fast": want one of auto, kvm, tcg`},
		{"bogus", "tcg", `--accel: invalid argument: accelerator "bogus"`},
	} {
		t.Setenv("SLICER_ACCEL", tt.env)
		err := Run(context.Background(), Options{Accel: tt.flag, DataDir: t.TempDir(), Out: io.Discard, Log: log})
		if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, api.ErrInvalid) {
			t.Errorf("Run with --accel %q and SLICER_ACCEL %q: error = %v, want %q", tt.flag, tt.env, err, tt.want)
		}
	}
}
