package systemd

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/openslicer/openslicer/api"
)

// UnitDir is where administrators' units live.
const UnitDir = "/etc/systemd/system"

// Installer writes units. Its zero value installs into UnitDir and reloads
// the running systemd.
type Installer struct {
	Dir     string                          // UnitDir when empty
	Running func() bool                     // Running when nil
	Reload  func(ctx context.Context) error // `systemctl daemon-reload` when nil
}

// Installed says what Install did.
type Installed struct {
	Path     string
	Reloaded bool // false when systemd is not running here
}

// Install writes unit as <dir>/<name>.service, refusing to replace an
// existing file unless force (api.ErrConflict), then reloads systemd when
// it runs. The file appears whole (written beside it, then renamed).
func (in Installer) Install(ctx context.Context, name, unit string, force bool) (Installed, error) {
	name, err := UnitName(name)
	if err != nil {
		return Installed{}, err
	}
	dir := in.Dir
	if dir == "" {
		dir = UnitDir
	}
	path := filepath.Join(dir, name+".service")
	if _, err := os.Lstat(path); err == nil && !force {
		return Installed{}, fmt.Errorf("%s exists: pass --force to replace it: %w", path, api.ErrConflict)
	}
	tmp, err := os.CreateTemp(dir, "."+name+".service.")
	if err != nil {
		return Installed{}, fmt.Errorf("write unit: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.WriteString(unit)
	if err == nil {
		err = tmp.Chmod(0o644)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return Installed{}, fmt.Errorf("write unit %s: %w", path, err)
	}
	running, reload := in.Running, in.Reload
	if running == nil {
		running = Running
	}
	if reload == nil {
		reload = daemonReload
	}
	if !running() {
		return Installed{Path: path}, nil
	}
	if err := reload(ctx); err != nil {
		return Installed{Path: path}, fmt.Errorf("wrote %s, but %w", path, err)
	}
	return Installed{Path: path, Reloaded: true}, nil
}

// Running reports whether systemd is the init system here, as
// sd_booted(3) decides it.
func Running() bool {
	fi, err := os.Stat("/run/systemd/system")
	return err == nil && fi.IsDir()
}

func daemonReload(ctx context.Context) error {
	out, err := exec.CommandContext(ctx, "systemctl", "daemon-reload").CombinedOutput()
	if err != nil {
		return fmt.Errorf("systemctl daemon-reload: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}
