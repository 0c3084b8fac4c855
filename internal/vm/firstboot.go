package vm

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/agent"
	"github.com/openslicer/openslicer/internal/config"
)

// firstBootFor returns the first-boot data of a new VM: the request's
// userdata, or else its group's; the config's SSH keys and the request's.
func (m *Manager) firstBootFor(g config.HostGroup, req api.CreateNodeRequest) (agent.FirstBoot, error) {
	fb := agent.FirstBoot{Userdata: req.Userdata}
	if fb.Userdata == "" {
		fb.Userdata = g.Userdata
		if g.UserdataFile != "" {
			data, err := os.ReadFile(g.UserdataFile)
			if err != nil {
				return fb, fmt.Errorf("host group %q userdata_file: %w", g.Name, err)
			}
			fb.Userdata = string(data)
		}
	}
	fb.SSHKeys = append(append([]string{}, m.opt.Config.SSHKeys...), req.SSHKeys...)
	return fb, nil
}

// deliverFirstBoot hands fb to the guest agent once it answers, for the
// life of the machine. The agent acts on it once per disk, so delivering it
// again on a relaunch is harmless.
func (m *Manager) deliverFirstBoot(life context.Context, in *instance, fb agent.FirstBoot) {
	go func() {
		if err := in.agent.WaitReady(life); err != nil {
			return // the VM went away first
		}
		ctx, cancel := context.WithTimeout(life, time.Minute)
		defer cancel()
		if err := in.agent.FirstBoot(ctx, fb); err != nil && life.Err() == nil {
			m.log.Warn("deliver first-boot data", "vm", in.rec.Hostname, "err", err)
		}
	}()
}

// waitUserdata blocks until the guest reports its userdata has run.
func (m *Manager) waitUserdata(ctx context.Context, in *instance, timeout time.Duration) error {
	if timeout == 0 {
		timeout = DefaultWaitTimeout
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		hctx, hcancel := context.WithTimeout(wctx, healthTimeout)
		h, err := in.agent.Health(hctx)
		hcancel()
		if err == nil && h.UserdataRan {
			return nil
		}
		select {
		case <-wctx.Done():
			if ctx.Err() != nil {
				return fmt.Errorf("vm %q: create aborted while waiting for userdata: %w", in.rec.Hostname, ctx.Err())
			}
			return fmt.Errorf("vm %q: userdata not done within %s: %w", in.rec.Hostname, timeout, api.ErrTimeout)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
