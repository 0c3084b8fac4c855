package vm

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/agent"
	"github.com/openslicer/openslicer/internal/config"
	"github.com/openslicer/openslicer/internal/hypervisor"
	"github.com/openslicer/openslicer/internal/store"
)

// Snapshot templates (host group key snapshot: true, an extension).
//
// The first create of such a group boots a template machine once, to
// agent ready, with its RAM in a file (hypervisor.Spec.MemoryFile), and
// captures it (hypervisor.Capturer): its device state, its memory file,
// and its disk, which becomes a read-only layer. The template machine is
// not a VM of the group: it has no name, no record among the VMs, and is
// killed once captured. Every create of the group then restores the
// template instead of booting: its disk copy-on-write over the layer
// (Layers.Overlay), its memory the template's file mapped privately, so
// that the pages no clone writes stay shared among all of them. Before
// the create answers, the clone gets an identity of its own
// (freshIdentity).
//
// A group with a network gets a template with a NIC that reaches nothing
// (hypervisor.Spec.UnlinkedNIC): a clone is restored with its own TAP, and
// takes its MAC, address and route from freshIdentity.
//
// A template is keyed (templateKey) on what the guest booted from and
// with: the image's files, the kernel arguments, the group's size,
// whether it has a network, the backend. A create whose key differs from the ready template's builds a
// new one; templates no longer current are removed once no VM's disk is
// over their layer. Creates asking for less CPU or RAM than the group's
// boot cold: the template has the group's size.
//
// Templates live in TemplatesDir/<id>/ (state/, disk.*); the store
// records each before anything is made (store.TemplateWriting), and when
// ready. At start (recoverTemplates) one found writing is a capture cut
// short: its processes, directory and record are removed, as are
// directories no record names.

// templateMAC is the MAC of a template machine's unlinked NIC (locally
// administered; nothing ever sees it).
const templateMAC = "02:00:00:00:00:01"

// templateNameLen is the length of a template ID's hex part.
const templateNameLen = 12

// templateLocks serialise the builds of one group's template.
type templateLocks struct {
	mu     sync.Mutex
	groups map[string]*sync.Mutex
}

func (l *templateLocks) lock(group string) func() {
	l.mu.Lock()
	if l.groups == nil {
		l.groups = map[string]*sync.Mutex{}
	}
	g := l.groups[group]
	if g == nil {
		g = &sync.Mutex{}
		l.groups[group] = g
	}
	l.mu.Unlock()
	g.Lock()
	return g.Unlock
}

// templatesEnabled reports whether this daemon can keep templates.
func (m *Manager) templatesEnabled() bool {
	return m.opt.Layers != nil && m.opt.TemplatesDir != ""
}

// usesTemplate reports whether a create of g for cpus and ram restores
// from the group's template.
func (m *Manager) usesTemplate(g config.HostGroup, cpus int, ram int64) bool {
	return g.Snapshot && m.templatesEnabled() && cpus == g.VCPU && ram == g.RAMBytes()
}

// templateKey is the digest of what a template of g is made from: a
// template with another key is stale.
func templateKey(g config.HostGroup, img BootImage, diskBytes int64, backend string) string {
	h := sha256.New()
	for _, part := range []string{
		backend, img.Kernel, img.Initrd, img.RootFS, img.ImageID,
		strconv.Itoa(g.VCPU), strconv.FormatInt(g.RAMBytes(), 10), strconv.FormatInt(diskBytes, 10),
		strings.TrimSpace(g.KernelArgs), g.Init, strconv.FormatBool(g.Network != nil),
	} {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// newTemplateID returns a fresh template ID, tpl-<12 hex digits>.
func newTemplateID() string {
	var b [templateNameLen / 2]byte
	rand.Read(b[:])
	return "tpl-" + hex.EncodeToString(b[:])
}

// templateFor returns the ready template of g for its current image and
// size, building it first when there is none (one build per group at a
// time; the others wait for it).
func (m *Manager) templateFor(ctx context.Context, g config.HostGroup) (store.Template, error) {
	imgName := m.opt.Config.ImageFor(g)
	img, err := m.opt.Images.Resolve(ctx, imgName)
	if err != nil {
		return store.Template{}, fmt.Errorf("resolve image %q: %w", imgName, err)
	}
	size, err := g.StorageBytes()
	if err != nil {
		return store.Template{}, err
	}
	key := templateKey(g, img, size, m.opt.Backend.Name())
	unlock := m.templates.lock(g.Name)
	defer unlock()
	all, err := m.opt.Store.ListTemplates()
	if err != nil {
		return store.Template{}, err
	}
	for _, t := range all {
		if t.Group == g.Name && t.Key == key && t.State == store.TemplateReady {
			return t, nil
		}
	}
	t, err := m.buildTemplate(ctx, g, img, size, key)
	if err != nil {
		return store.Template{}, fmt.Errorf("host group %q: snapshot template: %w", g.Name, err)
	}
	m.dropStaleTemplates(g.Name, t.ID)
	return t, nil
}

// buildTemplate boots a template machine of g, waits for its agent,
// captures it and records the template ready. Any failure unwinds what
// was made, record included.
func (m *Manager) buildTemplate(ctx context.Context, g config.HostGroup, img BootImage, size int64, key string) (store.Template, error) {
	id := newTemplateID()
	dir := filepath.Join(m.opt.TemplatesDir, id)
	t := store.Template{
		ID: id, Group: g.Name, State: store.TemplateWriting, Key: key, CreatedAt: time.Now().UTC(),
		Dir: dir, StateDir: filepath.Join(dir, "state"), RunDir: m.runDir(id), Backend: m.opt.Backend.Name(),
		Name: g.Name + "-template", Layer: filepath.Join(dir, "disk.img"),
	}
	log := m.log.With("template", id, "group", g.Name)
	var undo undoStack
	fail := func(err error) (store.Template, error) {
		if uerr := undo.run(context.WithoutCancel(ctx)); uerr != nil {
			log.Error("undo template build", "err", uerr)
			err = errors.Join(err, fmt.Errorf("undo: %w", uerr))
		}
		return store.Template{}, err
	}
	if err := m.opt.Store.PutTemplate(t); err != nil {
		return store.Template{}, err
	}
	undo.push(func(context.Context) error { return m.opt.Store.DeleteTemplate(id) })
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fail(err)
	}
	undo.push(func(context.Context) error { return os.RemoveAll(dir) })
	begin := time.Now()

	// The record names the layer before it is made, so that a crash
	// leaves nothing recovery does not find (Layers.Drop also removes
	// its registration with the image).
	disk := t.Layer
	undo.push(func(context.Context) error { return m.opt.Layers.Drop(disk) })
	format, err := m.opt.Clone(ctx, img.RootFS, disk, size)
	if err != nil {
		return fail(fmt.Errorf("make the template's disk: %w", err))
	}
	t.LayerFormat = format

	backend := m.opt.Backend
	memFile := filepath.Join(dir, "memory.running")
	spec := hypervisor.Spec{
		ID: t.RunDir, Name: t.Name, VCPUs: g.VCPU, MemoryBytes: g.RAMBytes(),
		Kernel: img.Kernel, Initrd: img.Initrd, Cmdline: GuestCmdline(t.Name, g.Init, g.KernelArgs, ""),
		Disks:  []hypervisor.Disk{{Path: disk, Format: format}},
		RunDir: t.RunDir, ConsoleLog: m.logPath(id), MemoryFile: memFile,
	}
	if g.Network != nil {
		// The clones of a group with a network need a NIC among the
		// captured devices; the template's reaches nothing, and has no
		// address. Each clone gets its TAP at restore, and its MAC,
		// address and route through freshIdentity.
		spec.UnlinkedNIC, spec.MAC = true, templateMAC
	}
	undo.push(func(ctx context.Context) error {
		return errors.Join(backend.Reclaim(ctx, t.RunDir), os.RemoveAll(t.RunDir))
	})
	machine, err := backend.Start(ctx, spec)
	if err != nil {
		return fail(fmt.Errorf("start the template machine: %w", err))
	}
	undo.push(func(ctx context.Context) error { return machine.Kill(ctx) })
	capturer, ok := hypervisor.CanCapture(machine)
	if !ok {
		return fail(fmt.Errorf("backend %q cannot capture a running machine: %w", backend.Name(), api.ErrNotImplemented))
	}
	// The agent is released and its connection stays open into the
	// capture, which closes it and waits for the guest to let go of its
	// channel: a clone then starts with an agent waiting for a new host,
	// not one still in a session with a host that is gone (which costs
	// the clone's first connection a health-probe timeout).
	client := agent.NewClient(machine.DialAgent, log)
	defer client.Close()
	if err := awaitTemplateAgent(ctx, client, machine); err != nil {
		return fail(err)
	}
	booted := time.Since(begin)
	releaseAgent(ctx, log, client)
	if err := capturer.Capture(ctx, t.StateDir, hypervisor.CaptureOptions{}); err != nil {
		return fail(fmt.Errorf("capture the template machine: %w", err))
	}
	if err := machine.Kill(ctx); err != nil {
		return fail(err)
	}
	// The state holds its own link to the memory; the disk is the layer
	// from now on.
	if err := errors.Join(removeFile(memFile), os.Chmod(disk, 0o444), os.RemoveAll(t.RunDir)); err != nil {
		return fail(err)
	}
	t.State = store.TemplateReady
	if err := m.opt.Store.PutTemplate(t); err != nil {
		return fail(err)
	}
	undo.release()
	log.Info("snapshot template ready", "boot", booted.Round(time.Millisecond), "took", time.Since(begin).Round(time.Millisecond),
		"layer_format", format)
	return t, nil
}

// awaitTemplateAgent waits for the template machine's agent to answer
// through client (bounded by DefaultWaitTimeout), or for the machine to
// exit.
func awaitTemplateAgent(ctx context.Context, client *agent.Client, machine hypervisor.Machine) error {
	wctx, cancel := context.WithTimeout(ctx, DefaultWaitTimeout)
	defer cancel()
	ready := make(chan error, 1)
	go func() { ready <- client.WaitReady(wctx) }()
	select {
	case err := <-ready:
		if err != nil {
			return fmt.Errorf("the template machine's agent did not answer: %w", err)
		}
		return nil
	case <-machine.Done():
		cancel()
		<-ready
		return fmt.Errorf("the template machine exited before its agent answered: %w", api.ErrBootFailed)
	}
}

// templateDisk makes a clone's disk over the template's layer.
func (m *Manager) templateDisk(t store.Template) diskMaker {
	return func(ctx context.Context, _ BootImage, _ int64, dst string) (string, error) {
		return m.opt.Layers.Overlay(ctx, t.Layer, t.LayerFormat, dst)
	}
}

// dropStaleTemplates removes the templates of group other than keep that
// no VM's disk is over; failures are logged (the next start tries again).
func (m *Manager) dropStaleTemplates(group, keep string) {
	all, err := m.opt.Store.ListTemplates()
	if err != nil {
		m.log.Warn("list templates", "err", err)
		return
	}
	used, ok := m.templatesInUse()
	if !ok {
		return
	}
	for _, t := range all {
		if t.Group != group || t.ID == keep || t.State != store.TemplateReady || used[t.ID] {
			continue
		}
		if err := m.dropTemplate(t); err != nil {
			m.log.Warn("remove stale template", "template", t.ID, "err", err)
		} else {
			m.log.Info("stale template removed", "template", t.ID, "group", group)
		}
	}
}

// templatesInUse returns the templates whose layer some VM's disk or
// some commit's layer is over. When the store cannot be read, it returns
// nil and false: nothing is known to be unused.
func (m *Manager) templatesInUse() (map[string]bool, bool) {
	used := map[string]bool{}
	recs, err := m.opt.Store.List()
	if err != nil {
		m.log.Warn("list vms", "err", err)
		return nil, false
	}
	for _, r := range recs {
		used[r.Template] = true
	}
	commits, err := m.opt.Store.ListCommits()
	if err != nil {
		m.log.Warn("list commits", "err", err)
		return nil, false
	}
	for _, c := range commits {
		used[c.Template] = true
	}
	return used, true
}

// dropTemplate removes template t: its layer, directory and record.
func (m *Manager) dropTemplate(t store.Template) error {
	var errs []error
	if t.Layer != "" {
		errs = append(errs, m.opt.Layers.Drop(t.Layer))
	}
	errs = append(errs, os.RemoveAll(t.Dir))
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return m.opt.Store.DeleteTemplate(t.ID)
}

// recoverTemplates settles the templates an earlier daemon left: one
// being written is removed with its processes; of the ready ones, each
// group keeps its newest and those a VM's disk is over (a group gone
// from the config keeps only those); a directory under TemplatesDir no
// record names is removed.
func (m *Manager) recoverTemplates(ctx context.Context) error {
	if !m.templatesEnabled() {
		return nil
	}
	all, err := m.opt.Store.ListTemplates()
	if err != nil {
		return err
	}
	used, ok := m.templatesInUse()
	newest := map[string]bool{}
	known := map[string]bool{}
	var errs []error
	for _, t := range all { // newest first
		known[t.ID] = true
		switch {
		case t.State == store.TemplateWriting:
			m.log.Info("removing a snapshot template cut short by an earlier daemon", "template", t.ID, "group", t.Group)
			if b, err := m.backends.Get(t.Backend); err == nil {
				errs = append(errs, b.Reclaim(ctx, t.RunDir))
			}
			errs = append(errs, os.RemoveAll(t.RunDir), m.dropTemplate(t))
		case used[t.ID] || !ok:
		case !newest[t.Group] && m.groups[t.Group].Snapshot:
			newest[t.Group] = true
		default:
			m.log.Info("removing a stale snapshot template", "template", t.ID, "group", t.Group)
			errs = append(errs, m.dropTemplate(t))
		}
	}
	ents, err := os.ReadDir(m.opt.TemplatesDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return errors.Join(append(errs, err)...)
	}
	for _, e := range ents {
		if !known[e.Name()] && strings.HasPrefix(e.Name(), "tpl-") {
			m.log.Info("removing a template directory no record names", "dir", e.Name())
			errs = append(errs, os.RemoveAll(filepath.Join(m.opt.TemplatesDir, e.Name())))
		}
	}
	return errors.Join(errs...)
}
