package guest

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/agent/imageconfig"
)

// TestExecTakesTheImageDefaults: an image config file in the server's etc
// directory gives exec its environment and working directory; the
// request's own values still win.
func TestExecTakesTheImageDefaults(t *testing.T) {
	h := newHarness(t)
	work := t.TempDir()
	conf := imageconfig.Config{Env: []string{"GREETING=from-image", "PATH=/usr/bin:/bin"}, WorkingDir: work}
	file := filepath.Join(h.srv.etcDir, strings.TrimPrefix(imageconfig.Path, "/etc/"))
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, conf.Marshal(), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(req api.ExecRequest) string {
		t.Helper()
		got, err := h.client.ExecBuffered(context.Background(), asSelf(&req))
		if err != nil || got.ExitCode != 0 {
			t.Fatalf("ExecBuffered: %+v %v", got, err)
		}
		return got.Stdout
	}
	if got, want := run(api.ExecRequest{Command: `echo "$GREETING $PATH"; pwd`, Shell: "/bin/sh"}), "from-image /usr/bin:/bin\n"+work+"\n"; got != want {
		t.Errorf("with the image's defaults: %q, want %q", got, want)
	}
	if got, want := run(api.ExecRequest{Command: `echo "$GREETING"; pwd`, Shell: "/bin/sh", Env: []string{"GREETING=mine"}, Cwd: "/"}), "mine\n/\n"; got != want {
		t.Errorf("with the request's own: %q, want %q", got, want)
	}

	// A broken file is ignored: the agent's own defaults.
	os.WriteFile(file, []byte("{"), 0o644)
	if got, want := run(api.ExecRequest{Command: `echo "[$GREETING]"`, Shell: "/bin/sh"}), "[]\n"; got != want {
		t.Errorf("with a broken file: %q, want %q", got, want)
	}
}
