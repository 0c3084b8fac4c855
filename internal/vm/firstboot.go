package vm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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

// deliverBootData hands the guest agent, once it answers, the host's
// clock (a restored guest's stood still while it was suspended), the VM's
// secrets and then fb (in that order, so that userdata finds the secrets),
// for the life of the machine. The agent acts on fb once per disk, so
// delivering it again on a relaunch or re-attach is harmless. A failure is
// logged, not fatal. The channel is closed once both are delivered, have
// failed, or the machine's life has ended.
func (m *Manager) deliverBootData(life context.Context, in *instance, client *agent.Client, fb agent.FirstBoot) <-chan struct{} {
	in.mu.Lock()
	log := m.log.With("vm", in.rec.Hostname)
	in.mu.Unlock()
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := client.WaitReady(life); err != nil {
			return // the VM went away first
		}
		ctx, cancel := context.WithTimeout(life, time.Minute)
		defer cancel()
		syncClock(ctx, log, client)
		if err := m.pushSecrets(ctx, in, client); err != nil && life.Err() == nil {
			log.Warn("deliver secrets", "err", err)
		}
		if err := client.FirstBoot(ctx, fb); err != nil && life.Err() == nil {
			log.Warn("deliver first-boot data", "err", err)
		}
	}()
	return done
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

// syncClock sets the guest's wall clock to the host's. An agent that
// cannot (not init) is left alone; a failure is logged.
func syncClock(ctx context.Context, log *slog.Logger, client *agent.Client) {
	err := client.SetClock(ctx, time.Now())
	switch {
	case errors.Is(err, api.ErrNotImplemented):
		log.Debug("guest agent does not set its clock", "err", err)
	case err != nil && ctx.Err() == nil:
		log.Warn("set guest clock", "err", err)
	}
}
