package vm

import (
	"github.com/openslicer/openslicer/internal/hypervisor"
	"github.com/openslicer/openslicer/internal/vmstate"
)

// The state machine is vmstate.Rules; this file applies it to instances.
//
// An op whose rule has no Via state is checked and applied in one go under
// the VM's lock (applyLocked). An op with a Via state calls into the
// hypervisor, which may take long (a QMP command, a migration to disk), so
// it is a claim: taken under the lock (the VM is then in the Via state,
// and ops the table does not allow there are refused), the call made with
// no lock held, then settled under the lock. Meanwhile the machine may
// exit or the VM be deleted: both are allowed in Via states, and end the
// claim, whose settle then changes nothing.

// claim is an op under way with no lock held.
type claim struct {
	vm      string // hostname
	op      vmstate.Op
	from    vmstate.State // the recorded state when it was taken
	via, to vmstate.State
	machine hypervisor.Machine
}

// stateLocked is the state in is in for the state machine: Gone once its
// teardown has begun (or it was detached), the Via state of a claim under
// way, else the recorded state. in.mu must be held.
func (in *instance) stateLocked() vmstate.State {
	switch {
	case in.removed:
		return vmstate.Gone
	case in.busy != nil:
		return in.busy.via
	}
	return in.rec.State
}

// applyLocked checks op, which has no Via state, against the table and
// moves the record to the rule's To when that is a stored state. A refusal
// is a *vmstate.Refused (409). in.mu must be held; the caller writes the
// record.
func (in *instance) applyLocked(op vmstate.Op) error {
	r, err := vmstate.Check(in.rec.Hostname, op, in.stateLocked())
	if err != nil {
		return err
	}
	if r.To.Stored() {
		in.rec.State = r.To
	}
	return nil
}

// check reports whether op may run on in now: nil, or a *vmstate.Refused.
func (in *instance) check(op vmstate.Op) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	_, err := vmstate.Check(in.rec.Hostname, op, in.stateLocked())
	return err
}

// claim checks op, which has a Via state, and puts in in that state. The
// caller calls the claim's machine with no lock held, then settle.
func (m *Manager) claim(in *instance, op vmstate.Op) (*claim, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	state := in.stateLocked()
	r, err := vmstate.Check(in.rec.Hostname, op, state)
	if err == nil && in.machine == nil {
		// Running and paused VMs have a machine; this would be a bug.
		err = &vmstate.Refused{VM: in.rec.Hostname, Op: op, State: state}
	}
	if err != nil {
		return nil, err
	}
	c := &claim{vm: in.rec.Hostname, op: op, from: in.rec.State, via: r.Via, to: r.To, machine: in.machine}
	in.busy = c
	return c, nil
}

// settle ends claim c after its hypervisor call returned err. On failure
// the VM is back where it was and err is returned. On success it moves to
// the rule's To state, done (when not nil) runs with in.mu held, and the
// record is written. A claim the VM lost meanwhile (its machine exited, it
// was deleted or restarted) changes nothing and is refused, naming the
// state the VM is in now.
func (m *Manager) settle(in *instance, c *claim, err error, done func()) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.busy != c || in.removed {
		return &vmstate.Refused{VM: in.rec.Hostname, Op: c.op, State: in.stateLocked()}
	}
	in.busy = nil
	if err != nil {
		return err
	}
	in.rec.State = c.to
	if done != nil {
		done()
	}
	return m.opt.Store.Put(in.rec)
}
