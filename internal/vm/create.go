package vm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/agent"
	"github.com/openslicer/openslicer/internal/config"
	"github.com/openslicer/openslicer/internal/hypervisor"
	"github.com/openslicer/openslicer/internal/network"
	"github.com/openslicer/openslicer/internal/store"
	"github.com/openslicer/openslicer/internal/vmstate"
)

// Wait values accepted by Create.
const (
	WaitNone     = ""
	WaitAgent    = "agent"
	WaitUserdata = "userdata"
)

// guestNIC is the name the guest kernel gives the VM's one NIC.
const guestNIC = "eth0"

// DefaultWaitTimeout bounds a create's wait when the caller gives none.
const DefaultWaitTimeout = 5 * time.Minute

// CreateOptions are the query parameters of a create.
type CreateOptions struct {
	Wait    string
	Timeout time.Duration
	// Answer, when set, sends the create's answer to its client once the
	// VM is up (and waited for). It must call commit just before the
	// answer becomes complete for the client (see server.answerCreate):
	// commit records that the create was answered, and only answered VMs
	// survive a daemon crash. Until then the VM's record is marked
	// unanswered, and the next daemon reclaims it like one caught mid-create.
	// An error from Answer before commit unwinds the create; after commit
	// it must return nil, the VM being the client's. Without Answer (the
	// config's count VMs, Go callers) the VM counts as answered from the
	// start.
	Answer func(resp api.CreateNodeResponse, commit func() error) error
}

// Create launches a VM in group. Every resource it makes is undone if a
// later step fails, if the wait times out (ErrTimeout), or if the VM is
// deleted while it is being created.
func (m *Manager) Create(ctx context.Context, group string, req api.CreateNodeRequest, opt CreateOptions) (api.CreateNodeResponse, error) {
	g, ok := m.groups[group]
	if !ok {
		return api.CreateNodeResponse{}, fmt.Errorf("host group %q: %w", group, api.ErrNotFound)
	}
	return m.create(ctx, g, req, opt, false)
}

// create launches a VM; protected marks the VMs a group's count declares.
func (m *Manager) create(ctx context.Context, g config.HostGroup, req api.CreateNodeRequest, opt CreateOptions, protected bool) (api.CreateNodeResponse, error) {
	cpus, ram, err := checkCreate(g, req, opt)
	if err != nil {
		return api.CreateNodeResponse{}, err
	}
	if err := m.checkSecrets(req.Secrets); err != nil {
		return api.CreateNodeResponse{}, err
	}
	fb, err := m.firstBootFor(ctx, g, req)
	if err != nil {
		return api.CreateNodeResponse{}, err
	}
	if poolServes(g, req, cpus, ram, protected) {
		if resp, taken, err := m.createFromPool(ctx, g, req, opt, fb); taken {
			return resp, err
		}
	}
	newDisk, restoreFrom, template, err := m.machineSource(ctx, g, cpus, ram)
	if err != nil {
		return api.CreateNodeResponse{}, err
	}
	ctx, abort := context.WithCancel(ctx)
	defer abort()

	var undo undoStack
	in, err := m.allocate(g, req, fb, cpus, ram, protected, opt.Answer != nil, abort, &undo)
	if err != nil {
		return api.CreateNodeResponse{}, err
	}
	defer close(in.created)
	log := m.log.With("vm", in.rec.Hostname, "group", g.Name)
	in.mu.Lock()
	in.rec.Template = template.ID
	in.mu.Unlock()

	if err := m.start(ctx, log, g, in, newDisk, restoreFrom, &undo); err != nil {
		return api.CreateNodeResponse{}, m.fail(ctx, log, &undo, err)
	}
	if err := m.identifyClone(ctx, in, template, opt.Timeout); err != nil {
		return api.CreateNodeResponse{}, m.fail(ctx, log, &undo, err)
	}
	if err := m.wait(ctx, in, opt); err != nil {
		return api.CreateNodeResponse{}, m.fail(ctx, log, &undo, err)
	}
	resp := in.createResponse()
	if opt.Answer != nil {
		if err := opt.Answer(resp, func() error { return m.markAnswered(in) }); err != nil {
			err = fmt.Errorf("vm %q: the create could not be answered: %w", resp.Hostname, err)
			return api.CreateNodeResponse{}, m.fail(ctx, log, &undo, err)
		}
	}
	undo.release()
	m.watch(in)
	log.Info("vm created", "persistent", in.rec.Persistent, "wait", opt.Wait, "template", template.ID)
	return resp, nil
}

// machineSource is where a new machine of g comes from: a snapshot
// group's restores its template (built first when there is none), with
// the disk over the template's layer and the machine from its state;
// any other boots with a disk from the image.
func (m *Manager) machineSource(ctx context.Context, g config.HostGroup, cpus int, ram int64) (diskMaker, string, store.Template, error) {
	if !m.usesTemplate(g, cpus, ram) {
		return m.imageDisk, "", store.Template{}, nil
	}
	t, err := m.templateFor(ctx, g)
	if err != nil {
		return nil, "", store.Template{}, err
	}
	return m.templateDisk(t), t.StateDir, t, nil
}

// identifyClone gives a VM restored from template t its own identity
// once its agent answers, before anyone else reaches it, whatever the
// create waits for. A booted VM (no template) has it from its kernel
// command line already.
func (m *Manager) identifyClone(ctx context.Context, in *instance, t store.Template, timeout time.Duration) error {
	if t.ID == "" {
		return nil
	}
	if err := m.waitAgent(ctx, in, timeout); err != nil {
		return err
	}
	return m.freshIdentity(ctx, in)
}

// markAnswered records that the create of in is being answered: from now
// on the VM survives a daemon crash (when persistent).
func (m *Manager) markAnswered(in *instance) error {
	in.mu.Lock()
	in.rec.Unanswered = false
	rec := in.rec
	in.mu.Unlock()
	return m.opt.Store.Put(rec)
}

// sizeWithin applies a request's vCPUs and RAM (0: keep) to cpus and ram,
// within host group g's limits, and reports every value it refuses.
// cpuField is how the request names its vCPUs ("cpus" in a create,
// "vcpu" in a fork).
func sizeWithin(g config.HostGroup, cpuField string, reqCPUs int, reqRAM int64, cpus int, ram int64) (int, int64, []error) {
	var errs []error
	switch {
	case reqCPUs < 0:
		errs = append(errs, fmt.Errorf("%s %d must not be negative", cpuField, reqCPUs))
	case reqCPUs > g.VCPU:
		errs = append(errs, fmt.Errorf("%s %d exceeds host group %q limit of %d", cpuField, reqCPUs, g.Name, g.VCPU))
	case reqCPUs > 0:
		cpus = reqCPUs
	}
	switch {
	case reqRAM < 0:
		errs = append(errs, fmt.Errorf("ram_bytes %d must not be negative", reqRAM))
	case reqRAM > g.RAMBytes():
		errs = append(errs, fmt.Errorf("ram_bytes %d exceeds host group %q limit of %d", reqRAM, g.Name, g.RAMBytes()))
	case reqRAM > 0 && reqRAM < 64<<20:
		errs = append(errs, fmt.Errorf("ram_bytes %d is below the 64 MiB minimum", reqRAM))
	case reqRAM > 0:
		ram = reqRAM
	}
	return cpus, ram, errs
}

// checkCreate validates a request against its group and returns the
// effective size.
func checkCreate(g config.HostGroup, req api.CreateNodeRequest, opt CreateOptions) (cpus int, ram int64, err error) {
	cpus, ram, errs := sizeWithin(g, "cpus", req.CPUs, req.RamBytes, g.VCPU, g.RAMBytes())
	if req.GPUCount > g.GPUCount {
		errs = append(errs, fmt.Errorf("gpu_count %d exceeds host group %q limit of %d", req.GPUCount, g.Name, g.GPUCount))
	}
	if err := checkTags(req.Tags); err != nil {
		errs = append(errs, err)
	}
	if req.DiskImage != "" {
		errs = append(errs, errors.New("disk_image is not accepted: the disk is always <hostname>.img"))
	}
	if req.Hostname != "" {
		errs = append(errs, errors.New("hostname cannot be chosen: names are allocated as <group>-N"))
	}
	if opt.Wait != WaitNone && opt.Wait != WaitAgent && opt.Wait != WaitUserdata {
		errs = append(errs, fmt.Errorf("wait %q: want agent or userdata", opt.Wait))
	}
	if opt.Timeout < 0 {
		errs = append(errs, fmt.Errorf("timeout %s must not be negative", opt.Timeout))
	}
	if len(errs) > 0 {
		return 0, 0, fmt.Errorf("%w: %w", api.ErrInvalid, errors.Join(errs...))
	}
	// Not implemented yet: say so instead of silently ignoring the field.
	if req.IP != "" {
		return 0, 0, fmt.Errorf("ip is not supported by this daemon yet: %w", api.ErrNotImplemented)
	}
	if err := checkNetwork(g, req.Network); err != nil {
		return 0, 0, err
	}
	if err := checkStorage(g); err != nil {
		return 0, 0, err
	}
	return cpus, ram, nil
}

// allocate writes the VM's record (state creating; unanswered when its
// client is still to be answered) and enters it in the table, so that lists
// show it and a delete can abort it.
func (m *Manager) allocate(g config.HostGroup, req api.CreateNodeRequest, fb agent.FirstBoot, cpus int, ram int64, protected, unanswered bool, abort context.CancelFunc, undo *undoStack) (*instance, error) {
	return m.allocateWith(g, req.Tags, req.Network, abort, undo, func(index int, hostname string) store.VM {
		return store.VM{
			Hostname: hostname, Group: g.Name, Index: index, CPUs: cpus, RamBytes: ram,
			Tags: req.Tags, Persistent: req.Persistent, Protected: protected, State: vmstate.Creating, Unanswered: unanswered,
			Userdata: fb.Userdata, SSHKeys: fb.SSHKeys, Secrets: secretScope(req.Secrets),
			CreatedAt: time.Now().UTC().Truncate(time.Second),
			Disk:      m.diskPath(hostname), RunDir: m.runDir(hostname), Backend: m.opt.Backend.Name(),
		}
	})
}

// allocateWith allocates the next name in g and writes the record build
// returns for it, planning its network with the override (a VM with tags
// may not take another's friendly name), and enters it in the table.
func (m *Manager) allocateWith(g config.HostGroup, tags []string, override *api.CreateNodeNetworkPolicy, abort context.CancelFunc, undo *undoStack, build func(index int, hostname string) store.VM) (*instance, error) {
	// The table lock covers the name check and the insert, so two creates
	// cannot take the same friendly name.
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.checkNamesLocked("", tags); err != nil {
		return nil, err
	}
	rec, err := m.opt.Store.Allocate(g.Name, g.Hostname, build)
	if err != nil {
		return nil, err
	}
	undo.push(func(context.Context) error { return m.opt.Store.Delete(rec.Hostname) })

	in := &instance{rec: rec, created: make(chan struct{}), abort: abort}
	if g.Network != nil {
		if err := m.assignPlanLocked(g, in, override); err != nil {
			return nil, errors.Join(err, undo.run(context.Background()))
		}
		if err := m.opt.Store.Put(in.rec); err != nil {
			return nil, errors.Join(err, undo.run(context.Background()))
		}
	}
	m.vms[rec.Hostname] = in
	undo.push(func(context.Context) error {
		m.mu.Lock()
		delete(m.vms, rec.Hostname)
		m.mu.Unlock()
		return nil
	})
	return in, nil
}

// diskMaker makes a new VM's root disk at dst and returns its format
// ("raw" or "qcow2"); img and size are its group's image and disk size.
// It must leave nothing at dst when it fails.
type diskMaker func(ctx context.Context, img BootImage, size int64, dst string) (format string, err error)

// imageDisk is a create's disk: a clone of the group's image.
func (m *Manager) imageDisk(ctx context.Context, img BootImage, size int64, dst string) (string, error) {
	return m.opt.Clone(ctx, img.RootFS, dst, size)
}

// start starts the machine of in with the backend its record names: first
// making its disk with newDisk when that is set (a relaunch or restore
// boots the disk it has), restored from the state directory restoreFrom
// when that is set.
func (m *Manager) start(ctx context.Context, log *slog.Logger, g config.HostGroup, in *instance, newDisk diskMaker, restoreFrom string, undo *undoStack) error {
	imgName := m.opt.Config.ImageFor(g)
	img, err := m.opt.Images.Resolve(ctx, imgName)
	if err != nil {
		return fmt.Errorf("resolve image %q: %w", imgName, err)
	}
	size, err := g.StorageBytes()
	if err != nil {
		return err
	}
	in.mu.Lock()
	rec := in.rec
	in.mu.Unlock()
	backend, err := m.backendFor(rec)
	if err != nil {
		return err
	}
	fresh := newDisk != nil
	if fresh {
		format, err := newDisk(ctx, img, size, rec.Disk)
		if err != nil {
			return fmt.Errorf("make root disk: %w", err)
		}
		undo.push(func(context.Context) error { return removeFile(rec.Disk) })
		in.mu.Lock()
		in.rec.DiskFormat = format
		rec = in.rec
		in.mu.Unlock()
	}

	if err := os.MkdirAll(rec.RunDir, 0o700); err != nil {
		return err
	}
	undo.push(func(context.Context) error { return os.RemoveAll(rec.RunDir) })
	if err := os.MkdirAll(m.opt.LogDir, 0o755); err != nil {
		return err
	}
	plan, err := m.ensurePlan(g, in)
	if err != nil {
		return err
	}

	netArg := ""
	if plan != nil {
		netArg = plan.Guest.KernelArg(guestName(rec), guestNIC)
	}
	spec := hypervisor.Spec{
		ID: rec.RunDir, Name: rec.Hostname, VCPUs: rec.CPUs, MemoryBytes: rec.RamBytes,
		Kernel: img.Kernel, Initrd: img.Initrd, Cmdline: GuestCmdline(guestName(rec), g.Init, g.KernelArgs, netArg),
		Disks:  []hypervisor.Disk{{Path: rec.Disk, Format: diskFormat(rec)}},
		RunDir: rec.RunDir, ConsoleLog: m.logPath(machineName(rec)), RestoreFrom: restoreFrom,
		SharedMemory: g.HotFork,
	}
	var netns string
	if plan != nil {
		if err := m.writePlan(machineName(rec), *plan); err != nil {
			return err
		}
		if fresh {
			undo.push(func(context.Context) error { return removeFile(m.planPath(machineName(rec))) })
		}
		att, err := m.setupNetwork(ctx, *plan, undo)
		if err != nil {
			return err
		}
		spec.TAP, spec.MAC, netns = att.TAP, att.MAC, att.NetNS
		log.Debug("network set up", "mode", plan.Mode, "ip", plan.Guest.Address, "tap", att.TAP)
	}
	// The console log is appended to by every boot of the VM: this
	// boot's output is what comes after its size now.
	consoleFrom := consoleSize(spec.ConsoleLog)
	var machine hypervisor.Machine
	err = network.InNetNS(netns, func() error {
		var err error
		machine, err = backend.Start(ctx, spec)
		return err
	})
	if err != nil {
		return fmt.Errorf("start machine: %w", err)
	}
	undo.push(func(ctx context.Context) error { return machine.Kill(ctx) })
	client := m.newAgent(in, machine)
	undo.push(func(context.Context) error { return client.Close() })

	handle, err := json.Marshal(machine.Handle())
	if err != nil {
		return err
	}
	life, endLife := context.WithCancel(context.WithoutCancel(ctx))
	undo.push(func(context.Context) error { endLife(); return nil })
	var id *agent.Identity
	if restoreFrom != "" && !m.isCloneState(restoreFrom) {
		// Restored, not booted: the command line was not read again. (A
		// template's clone or a hot fork is given a new identity by freshIdentity,
		// before its create answers.)
		restored := restoredIdentity(rec.Hostname, plan, newEntropy())
		id = &restored
	}
	delivered := m.deliverBootData(life, in, client, id, agent.FirstBoot{Userdata: rec.Userdata, SSHKeys: rec.SSHKeys})
	in.mu.Lock()
	if err := in.applyLocked(vmstate.Boot); err != nil {
		in.mu.Unlock()
		return err
	}
	in.machine, in.agent, in.endLife, in.delivered = machine, client, endLife, delivered
	in.boot = bootWatch{
		hostname: rec.Hostname, console: spec.ConsoleLog, offset: consoleFrom, restore: restoreFrom != "",
		exited: machine.Done(), accel: m.opt.Accelerator, bound: m.opt.BootWatchdog,
	}
	in.rec.Machine = handle
	rec = in.rec
	in.mu.Unlock()
	return m.opt.Store.Put(rec)
}

// wait waits as a create or relaunch asked: for the agent, or for the
// agent and then the first-boot userdata.
func (m *Manager) wait(ctx context.Context, in *instance, opt CreateOptions) error {
	if opt.Wait == WaitNone {
		return nil
	}
	start := time.Now()
	if err := m.waitAgent(ctx, in, opt.Timeout); err != nil || opt.Wait != WaitUserdata {
		return err
	}
	left := opt.Timeout
	if left == 0 {
		left = DefaultWaitTimeout
	}
	return m.waitUserdata(ctx, in, max(left-time.Since(start), time.Millisecond))
}

// waitAgent blocks until the guest agent answers and has been handed its
// secrets and first-boot data, the timeout passes (ErrTimeout) or ctx ends.
// Meanwhile the boot watchdog (watchdog.go) ends the wait early, with
// ErrBootFailed, when the guest stays silent on its console past the
// watchdog's bound or its machine exits.
func (m *Manager) waitAgent(ctx context.Context, in *instance, timeout time.Duration) error {
	if timeout == 0 {
		timeout = DefaultWaitTimeout
	}
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	wctx, fail := context.WithCancelCause(tctx)
	in.mu.Lock()
	client, delivered, watch := in.agent, in.delivered, in.boot
	in.mu.Unlock()
	watched := make(chan struct{})
	defer func() { fail(nil); <-watched }()
	go func() {
		defer close(watched)
		if err := watch.run(wctx); err != nil {
			fail(err)
		}
	}()
	err := client.WaitReady(wctx)
	if err == nil {
		select {
		case <-delivered:
		case <-wctx.Done():
			err = wctx.Err()
		}
	}
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return fmt.Errorf("vm %q: create aborted while waiting for the agent: %w", in.rec.Hostname, ctx.Err())
	case errors.Is(context.Cause(wctx), api.ErrBootFailed):
		return context.Cause(wctx)
	case tctx.Err() != nil:
		return fmt.Errorf("vm %q: agent not ready within %s: %w", in.rec.Hostname, timeout, api.ErrTimeout)
	default:
		return fmt.Errorf("vm %q: wait for agent: %w", in.rec.Hostname, err)
	}
}

// fail unwinds a create and returns its error, joined with any undo error.
func (m *Manager) fail(ctx context.Context, log *slog.Logger, undo *undoStack, err error) error {
	if uerr := undo.run(ctx); uerr != nil {
		log.Error("undo create", "err", uerr)
		return errors.Join(err, fmt.Errorf("undo: %w", uerr))
	}
	return err
}

func (in *instance) createResponse() api.CreateNodeResponse {
	in.mu.Lock()
	defer in.mu.Unlock()
	return api.CreateNodeResponse{
		Hostname: in.rec.Hostname, HostGroup: in.rec.Group, IP: in.rec.IP,
		CreatedAt: in.rec.CreatedAt, Arch: archName(), Persistent: in.rec.Persistent,
	}
}

func removeFile(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
