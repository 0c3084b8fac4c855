// Package doctor checks whether this host can run the daemon (`slicer
// doctor`): QEMU, the accelerator, the guest agent binary, what building
// the min image takes (busybox-static, mkfs.ext4 -d, the kernel package in
// apt's lists), host networking (by making and removing a throwaway TUN
// fd, nftables table, network namespace, veth pair and bridge), free space
// and write access in the data and image directories, and whether the API
// address is free.
//
// Each check gives a Result: ok, warn (works, or not needed by this
// config, but worth knowing) or FAIL (a blocker: `slicer up` cannot run
// its config here). The results are computed from facts by pure functions
// (checks.go, table-tested); Run gathers the facts.
package doctor

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strconv"

	"github.com/openslicer/openslicer/internal/config"
	"github.com/openslicer/openslicer/internal/image"
	"github.com/openslicer/openslicer/internal/network"
)

// Status is a check's outcome.
type Status string

const (
	OK   Status = "ok"
	Warn Status = "warn"
	Fail Status = "FAIL" // a blocker
)

// Result is one row of the report.
type Result struct {
	Check  string `json:"check"`
	Status Status `json:"status"`
	Detail string `json:"detail"`
	Fix    string `json:"fix,omitempty"`
}

// Report is every result; OK is false when any is a blocker.
type Report struct {
	OK     bool     `json:"ok"`
	Checks []Result `json:"checks"`
}

// Blockers counts the results that fail.
func (r Report) Blockers() int { return count(r.Checks, Fail) }

// Warnings counts the results that warn.
func (r Report) Warnings() int { return count(r.Checks, Warn) }

func count(rs []Result, s Status) int {
	n := 0
	for _, r := range rs {
		if r.Status == s {
			n++
		}
	}
	return n
}

// Options are what Run checks against.
type Options struct {
	// Config is the config the daemon would run (validated, defaults
	// applied). ConfigName names it ("slicer.yaml", "the embedded
	// default"); ConfigErr is why it could not be loaded, in which case
	// Config is the embedded default, used for the other checks.
	Config     *config.Config
	ConfigName string
	ConfigErr  error
	// DataDir and ImageDir are the daemon's resolved directories.
	DataDir, ImageDir string
	// APISocket is the resolved path when the API is a unix socket;
	// otherwise the API is Config.API's address and port.
	APISocket string
	// FindAgent locates the slicer-agent binary the daemon would use.
	FindAgent func() (string, error)
	// Accel reports the accelerator decision (see AccelResult); nil leaves
	// the row out.
	Accel func(ctx context.Context) Result

	// The rest are replaced in tests; zero values mean the real host.
	Root     *bool                                                     // running as root; default os.Geteuid() == 0
	Probe    func(context.Context, network.ProbeOptions) network.Probe // default network.ProbeHost
	QEMU     string                                                    // default "qemu-system-x86_64"
	NetNSDir string                                                    // default network.DefaultNetNSDir
	// CheckNetworks checks the config's networks against the host;
	// default network.Host.CheckHost.
	CheckNetworks func(context.Context, []config.HostGroup) error
}

// Run runs every check and returns the report.
func Run(ctx context.Context, opt Options) Report {
	if opt.Probe == nil {
		opt.Probe = network.ProbeHost
	}
	if opt.CheckNetworks == nil {
		opt.CheckNetworks = checkNetworks
	}
	if opt.QEMU == "" {
		opt.QEMU = "qemu-system-x86_64"
	}
	root := os.Geteuid() == 0
	if opt.Root != nil {
		root = *opt.Root
	}
	var rs []Result
	rs = append(rs, configResult(opt.ConfigName, opt.ConfigErr))
	rs = append(rs, qemuCheck(ctx, opt.QEMU))
	if opt.Accel != nil {
		rs = append(rs, opt.Accel(ctx))
	}
	rs = append(rs, agentCheck(opt.FindAgent))
	rs = append(rs, busyboxResult(image.CheckBusybox()))
	mkfs, err := image.CheckMkfs(ctx, "")
	rs = append(rs, mkfsResult(mkfs, err))
	rs = append(rs, kernelCheck(ctx, opt.ImageDir))
	rs = append(rs, networkCheck(ctx, opt, root)...)
	rs = append(rs, dirCheck("data directory", opt.DataDir), dirCheck("image directory", opt.ImageDir))
	rs = append(rs, apiCheck(opt.Config.API, opt.APISocket))
	return summarize(rs)
}

// summarize makes the report: OK unless a result is a blocker.
func summarize(rs []Result) Report {
	return Report{OK: count(rs, Fail) == 0, Checks: rs}
}

func qemuCheck(ctx context.Context, bin string) Result {
	path, err := exec.LookPath(bin)
	if err != nil {
		return qemuResult(bin, false, nil, nil)
	}
	out, err := exec.CommandContext(ctx, path, "--version").CombinedOutput()
	return qemuResult(path, true, out, err)
}

func agentCheck(find func() (string, error)) Result {
	if find == nil {
		return agentResult("", errors.New("no agent lookup given"))
	}
	return agentResult(find())
}

func kernelCheck(ctx context.Context, imageDir string) Result {
	cached, _ := image.CachedKernel(imageDir)
	pkg, err := image.KernelPackage(ctx)
	return kernelResult(image.KernelMetapackage(), cached, pkg, err)
}

// networkCheck probes host networking as root, and checks the config's
// networks against the host.
func networkCheck(ctx context.Context, opt Options, root bool) []Result {
	networked := hasNetwork(opt.Config)
	if !root {
		return networkResults(networked, false, network.Probe{}, nil)
	}
	p := opt.Probe(ctx, network.ProbeOptions{Tag: "sdoc" + strconv.Itoa(os.Getpid()), NetNSDir: opt.NetNSDir})
	var groupsErr error
	if networked {
		groupsErr = opt.CheckNetworks(ctx, opt.Config.HostGroups)
	}
	return networkResults(networked, true, p, groupsErr)
}

func checkNetworks(ctx context.Context, groups []config.HostGroup) error {
	h, err := network.New(network.Options{})
	if err != nil {
		return err
	}
	defer h.Close()
	return h.CheckHost(ctx, groups)
}

func hasNetwork(cfg *config.Config) bool {
	for _, g := range cfg.HostGroups {
		if g.Network != nil {
			return true
		}
	}
	return false
}
