// Package daemon wires the daemon together for `slicer up`: it loads and
// validates the config, resolves paths, prepares images, opens the store,
// re-attaches or reclaims VMs left by an earlier run, and serves the API
// until its context ends or a client asks it to stop.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/config"
	"github.com/openslicer/openslicer/internal/githubkeys"
	"github.com/openslicer/openslicer/internal/hypervisor/qemu"
	"github.com/openslicer/openslicer/internal/image"
	"github.com/openslicer/openslicer/internal/network"
	"github.com/openslicer/openslicer/internal/secrets"
	"github.com/openslicer/openslicer/internal/server"
	"github.com/openslicer/openslicer/internal/store"
	"github.com/openslicer/openslicer/internal/vm"
)

// Options are the flags of `slicer up`.
type Options struct {
	// ConfigPath is the YAML config; empty runs the embedded default.
	ConfigPath string
	// DataDir holds every file the daemon writes; empty means the
	// documented default locations.
	DataDir string
	// ImageDir overrides Paths.Images (to share a built image cache).
	ImageDir string
	// AgentBinary is the slicer-agent to put in images; empty looks next to
	// the running executable, then in PATH.
	AgentBinary string
	// Accel is the accelerator mode (auto, kvm or tcg; --accel); empty
	// takes SLICER_ACCEL, else auto.
	Accel     string
	Version   string
	GitCommit string
	Out       io.Writer // banner and image-build progress
	Log       *slog.Logger
	// Ready, when set, is called with the listener address once serving.
	Ready func(addr string)
	// SuspendOnShutdown makes a stop suspend the running persistent VMs
	// (vm.StopSuspend) instead of shutting them down; the next start
	// restores them.
	SuspendOnShutdown bool
}

// Run runs the daemon until ctx ends or POST /daemon/shutdown.
func Run(ctx context.Context, opt Options) error {
	cwd, err := os.Getwd()
	if err != nil {
		return err
	}
	paths := ResolvePaths(opt.DataDir, cwd)
	if opt.ImageDir != "" {
		paths.Images = opt.ImageDir
	}
	accelMode, err := qemu.AccelModeFrom(opt.Accel, os.Getenv(qemu.AccelEnv))
	if err != nil {
		return err
	}
	cfg, err := loadConfig(opt.ConfigPath, opt.Out)
	if err != nil {
		return err
	}
	backend, err := newBackend(cfg.Hypervisor, paths.Images, opt.Log)
	if err != nil {
		return err
	}
	netHost, err := openNetwork(ctx, cfg, paths.DataDir, opt.Log)
	if err != nil {
		return err
	}
	if netHost != nil {
		defer netHost.Close()
	}

	for _, dir := range []string{paths.DataDir, filepath.Dir(paths.State), paths.Disks, paths.Commits, paths.Run, paths.Logs, paths.Images} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", dir, err)
		}
	}

	// kvm and tcg need no kernel: decide before a possibly long image
	// build, so a forced kvm that cannot work fails at once.
	var accel qemu.AccelDecision
	if accelMode != qemu.AccelAuto {
		if accel, err = backend.DecideAccel(ctx, accelMode, ""); err != nil {
			return err
		}
	}
	agentBin, err := findAgent(opt.AgentBinary)
	if err != nil {
		return err
	}
	images := newImageSource(cfg, paths.Images, agentBin, opt.Log, opt.Out)
	probeKernel, err := images.prepare(ctx, cfg)
	if err != nil {
		return err
	}
	// auto decides now, once the kernel is known, so the first create
	// pays nothing.
	if accelMode == qemu.AccelAuto {
		if accel, err = backend.DecideAccel(ctx, accelMode, probeKernel); err != nil {
			return err
		}
	}
	fmt.Fprintf(opt.Out, "Accelerator: %s (%s)\n", accel.Accelerator, accel.Reason)

	st, err := store.Open(paths.State)
	if err != nil {
		return err
	}
	defer st.Close()
	sec, err := secrets.Open(paths.Secrets)
	if err != nil {
		return err
	}
	keys := &githubkeys.Source{BaseURL: os.Getenv(githubkeys.EnvBaseURL)}
	if err := keys.Check(); err != nil {
		return fmt.Errorf("%s: %w", githubkeys.EnvBaseURL, err)
	}
	cloner := &image.Cloner{Qcow2: backend.Name() == "qemu", Log: opt.Log}
	vopt := vm.Options{
		Config: cfg, Backend: backend, Store: st, Images: images, Clone: cloner.Clone, Secrets: sec,
		Keys: keys, DisksDir: paths.Disks, RunDir: paths.Run, LogDir: paths.Logs, Log: opt.Log,
		Accelerator: accel.Accelerator, BootWatchdog: vm.BootWatchdogFor(cfg, accel.Accel.KVM),
		Layers: &image.DiskLayers{Log: opt.Log}, CommitsDir: paths.Commits,
	}
	if netHost != nil {
		vopt.Network = netHost
	}
	// The API listener comes first: a daemon that cannot serve must not
	// touch the VMs an earlier daemon left running.
	token := ""
	if cfg.API.AuthEnabled() {
		if token, err = server.LoadOrCreateToken(paths.Token); err != nil {
			return err
		}
	}
	bind := cfg.API.BindAddress
	if cfg.API.IsUnixSocket() {
		bind = paths.socketPath(bind)
	}
	l, err := server.Listen(bind, cfg.API.Port, cfg.API.IsUnixSocket())
	if err != nil {
		return err
	}
	if cfg.API.IsUnixSocket() {
		defer os.Remove(bind)
	}

	mgr := vm.New(vopt)
	if err := mgr.Recover(ctx); err != nil {
		opt.Log.Error("recover vms", "err", err)
	}
	if err := mgr.RestoreSuspended(ctx); err != nil {
		opt.Log.Error("restore vms suspended at the last stop", "err", err)
	}
	if err := mgr.EnsureCount(ctx); err != nil {
		opt.Log.Error("launch config vms", "err", err)
	}
	info := api.Info{
		Version: opt.Version, GitCommit: opt.GitCommit, Platform: runtime.GOOS, Arch: runtime.GOARCH,
		Accelerator: accel.Accelerator, AcceleratorReason: accel.Reason,
	}
	mode := serve(ctx, opt, l, token, paths, mgr, sec, info)
	opt.Log.Info("stopping vms", "mode", modeName(mode), "graceful", cfg.Graceful())
	return mgr.Close(context.Background(), mode)
}

// serve runs the API on l until ctx ends or a shutdown is requested, and
// returns what to do with the VMs: detach when the request asked for it,
// otherwise suspend or shut them down as the flags say.
func serve(ctx context.Context, opt Options, l net.Listener, token string, paths Paths, mgr *vm.Manager, sec *secrets.Store, info api.Info) vm.StopMode {
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	var detach atomic.Bool
	shutdown := func(d bool) {
		if d {
			detach.Store(true)
		}
		stop()
	}
	srv := server.New(server.Options{
		Manager: mgr, Log: opt.Log, Token: token, Shutdown: shutdown, Secrets: sec, Info: info,
	})
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(l) }()

	fmt.Fprintf(opt.Out, "API listening on %s (auth %s)\n", l.Addr(), authDesc(token, paths.Token))
	if opt.Ready != nil {
		opt.Ready(l.Addr().String())
	}
	select {
	case <-ctx.Done():
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			opt.Log.Error("api server", "err", err)
		}
	}
	opt.Log.Info("daemon stopping")
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	hs.Shutdown(sctx)
	switch {
	case detach.Load():
		return vm.StopDetach
	case opt.SuspendOnShutdown:
		return vm.StopSuspend
	default:
		return vm.StopShutDown
	}
}

func modeName(mode vm.StopMode) string {
	switch mode {
	case vm.StopDetach:
		return "detach"
	case vm.StopSuspend:
		return "suspend"
	default:
		return "shut down"
	}
}

func authDesc(token, path string) string {
	if token == "" {
		return "disabled"
	}
	return "token in " + path
}

// loadConfig loads, defaults and validates the config; an empty path is
// the embedded default.
func loadConfig(path string, out io.Writer) (*config.Config, error) {
	opts := config.ValidateOptions{CanRun: canRun, BaseDir: filepath.Dir(path)}
	if path != "" {
		return config.LoadAndValidate(path, defaultHypervisor(), opts)
	}
	cfg := config.Default(defaultHypervisor())
	fmt.Fprintf(out, "No config file given: running the embedded default:\n%s\n", config.DefaultYAML(defaultHypervisor()))
	config.ApplyDefaults(cfg, defaultHypervisor())
	if err := config.Validate(cfg, opts); err != nil {
		return nil, fmt.Errorf("embedded default config (a bug): %w", err)
	}
	return cfg, nil
}

// openNetwork returns the network host when a group has a network, after
// checking that this host can run every group's network (one error naming
// each fix); nil when no group has one. The host names its objects with
// the data directory's instance id.
func openNetwork(ctx context.Context, cfg *config.Config, dataDir string, log *slog.Logger) (*network.Host, error) {
	networked := false
	for _, g := range cfg.HostGroups {
		networked = networked || g.Network != nil
	}
	if !networked {
		return nil, nil
	}
	id, err := loadInstance(dataDir, log)
	if err != nil {
		return nil, err
	}
	log.Info("network objects are named with this data directory's instance id", "instance", id)
	h, err := network.New(network.Options{Instance: id, Log: log})
	if err != nil {
		return nil, err
	}
	if err := h.CheckHost(ctx, cfg.HostGroups); err != nil {
		h.Close()
		return nil, fmt.Errorf("this host cannot run the configured networks:\n%w", err)
	}
	return h, nil
}

// findAgent locates the slicer-agent binary.
func findAgent(given string) (string, error) {
	if given != "" {
		if _, err := os.Stat(given); err != nil {
			return "", fmt.Errorf("agent binary: %w", err)
		}
		return filepath.Abs(given)
	}
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "slicer-agent")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if p, err := execLookPath("slicer-agent"); err == nil {
		return filepath.Abs(p)
	}
	return "", errors.New("slicer-agent binary not found next to slicer or in PATH: build it with `make build` or pass --agent PATH")
}
