// Package vmstate is the VM state machine: the states a VM can be in, the
// operations done to it, and one table (Rules) saying which operation may
// run in which state and where it leaves the VM. The vm manager consults it
// before every operation, the store records its State values, the API shows
// its display names and Slicer's status values, and the metrics count by
// them.
//
// A refused operation is a *Refused error, of class api.ErrConflict (409),
// naming the VM, the operation and the state: `pause vm "sbox-1": it is
// Stopped: conflict`.
//
// Operations that call into the hypervisor (pause, resume, suspend) run
// with no lock held: the manager moves the VM to the rule's Via state
// under its lock, calls the hypervisor, then moves it to To (or back,
// should the call fail). Via states are never stored or shown on the wire;
// they make other operations wait their turn (or be refused) while the
// call is under way.
//
// This package imports only api, so that the store, the server and the
// manager can all use it.
package vmstate

import (
	"fmt"

	"github.com/openslicer/openslicer/api"
)

// State is a VM's state. The stored ones are recorded as their string
// values (the store's "state" field, the API's extension field "state"),
// which must therefore never change.
type State string

// The states a VM record is in.
const (
	// Creating: the record exists, the machine is being made (a create,
	// relaunch or restore); guest operations answer 503 until its agent is up.
	Creating State = api.StateCreating
	// Running: the machine runs.
	Running State = api.StateRunning
	// Paused: vCPUs frozen, memory held.
	Paused State = api.StatePaused
	// Suspended: memory and device state saved to disk, no process.
	Suspended State = api.StateSuspended
	// Stopped: a persistent VM whose machine is not running.
	Stopped State = api.StateStopped
	// Pooled: a VM of a warm pool, booted and its agent up, not a node
	// yet: never listed, and no operation reaches it but a take.
	Pooled State = "pooled"
)

// States that are never stored.
const (
	// Gone is where a VM is before its create and after its delete (or,
	// for this daemon, after it has been detached).
	Gone State = "gone"
	// Pausing, Resuming and Suspending are the Via states of operations
	// that call into the hypervisor: the call is under way.
	Pausing    State = "pausing"
	Resuming   State = "resuming"
	Suspending State = "suspending"
	// Committing is the Via state of a commit: the stopped VM's disk is
	// being made a read-only layer.
	Committing State = "committing"
)

// stateInfo is what the daemon shows of a state.
type stateInfo struct {
	label  string // display name, in messages and the CLI: "Running"
	status string // Slicer's status (api.Status*); "" for states never shown
	stored bool   // a record may be in it
}

// states describes every state. Issue 12 (snapshot pools, forks) adds its
// states here: a warm pool VM that is not a node yet, a template a VM is
// restored from.
var states = map[State]stateInfo{
	Creating:   {"Creating", api.StatusRunning, true},
	Running:    {"Running", api.StatusRunning, true},
	Paused:     {"Paused", api.StatusPaused, true},
	Suspended:  {"Suspended", api.StatusPaused, true}, // to a client it is paused: resume brings it back as it was
	Stopped:    {"Stopped", api.StatusStopped, true},
	Gone:       {"Gone", "", false},
	Pausing:    {"Pausing", "", false},
	Resuming:   {"Resuming", "", false},
	Suspending: {"Suspending", "", false},
	Committing: {"Committing", "", false},
	Pooled:     {"Pooled", "", true},
}

// All lists every state, stored ones first, in the order of the docs.
var All = []State{Creating, Running, Paused, Suspended, Stopped, Pooled, Gone, Pausing, Resuming, Suspending, Committing}

// Label is the state's display name ("Suspended"); a value this daemon
// does not know (a record from a newer one) is shown as it is.
func (s State) Label() string {
	if i, ok := states[s]; ok {
		return i.label
	}
	return string(s)
}

// Status is the status Slicer's clients understand (api.StatusRunning,
// StatusPaused or StatusStopped): a VM on its way up is Running, a
// suspended one Paused. A state that is not stored, or unknown, is "".
func (s State) Status() string { return states[s].status }

// Stored reports whether a record may be in s.
func (s State) Stored() bool { return states[s].stored }

// Op is an operation on a VM, or an event that happens to it, named by
// its verb.
type Op string

// The operations.
const (
	Create   Op = "create"   // a new record, before anything of the VM exists
	Boot     Op = "boot"     // the machine of a create, relaunch or restore has started
	Pause    Op = "pause"    // freeze the vCPUs
	Resume   Op = "resume"   // thaw them
	Suspend  Op = "suspend"  // save memory and devices to disk; the process exits
	Restore  Op = "restore"  // start the machine again from what suspend saved
	Relaunch Op = "relaunch" // boot a stopped VM's disk again
	Exit     Op = "exit"     // a persistent VM's machine exited (an ephemeral VM's exit is a delete)
	Shutdown Op = "shutdown" // ask the guest to power off or reboot; its exit follows
	Delete   Op = "delete"   // stop the machine, remove disk and record
	Detach   Op = "detach"   // leave the machine running for the next daemon
	Commit   Op = "commit"   // make a stopped VM's disk a read-only layer to fork from
	Capture  Op = "capture"  // commit a running VM's memory, devices and disk (a memory commit)
	Pool     Op = "pool"     // a warm pool VM whose agent answers joins its group's pool
	Take     Op = "take"     // a create takes a pool VM: it becomes a node
	// Guest operations: they need the agent, and change nothing.
	Exec    Op = "exec"
	Shell   Op = "shell"
	Forward Op = "forward"
	Health  Op = "health"
	Stats   Op = "stats"
	Guest   Op = "guest" // copy, file system, background exec
	// SyncSecrets pushes a changed secret store to the guest.
	SyncSecrets Op = "sync-secrets"
)

// verbs phrase the ops whose name does not read as a verb before `vm "x"`.
var verbs = map[Op]string{
	Exec: "exec in", Shell: "open a shell in", Forward: "forward to", Health: "check the health of",
	Stats: "read the stats of", Guest: "reach the guest of", SyncSecrets: "push secrets to",
}

// Verb phrases op for messages: `exec in`.
func (op Op) Verb() string {
	if v, ok := verbs[op]; ok {
		return v
	}
	return string(op)
}

// Rule says that Op may run on a VM in any state of From, and leaves it in
// To; To is "" for an op that changes nothing. An op with a Via state
// calls into the hypervisor: the VM is in Via while the call runs (with no
// lock held), then in To, or back where it was if the call fails.
//
// An op that fails part way leaves the VM where it began: a create is
// undone (the record goes), a relaunch or restore whose machine does not
// come up returns to Stopped or Suspended. Those undos are not rules.
type Rule struct {
	Op   Op
	From []State
	Via  State
	To   State
}

// Rules is the state machine. Issue 12 adds its rows here: taking a VM
// from a warm pool (pooled → running), forking a running VM, committing a
// stopped one to a template.
var Rules = []Rule{
	{Op: Create, From: []State{Gone}, To: Creating},
	{Op: Boot, From: []State{Creating}, To: Running},
	{Op: Pause, From: []State{Running}, Via: Pausing, To: Paused},
	{Op: Resume, From: []State{Paused}, Via: Resuming, To: Running},
	{Op: Suspend, From: []State{Running, Paused}, Via: Suspending, To: Suspended},
	{Op: Restore, From: []State{Suspended}, To: Creating},
	{Op: Relaunch, From: []State{Stopped}, To: Creating},
	// A machine that exits while it is being suspended is the suspend's:
	// Exit is refused in Suspending. One that exits while it is being
	// created is the create's (the boot watchdog reports it).
	// (A pooled VM is never persistent: its exit removes it.)
	{Op: Exit, From: []State{Running, Paused, Pausing, Resuming, Pooled}, To: Stopped},
	{Op: Shutdown, From: []State{Running, Paused}},
	{Op: Delete, From: []State{Creating, Running, Paused, Suspended, Stopped, Pausing, Resuming, Suspending, Pooled}, To: Gone},
	{Op: Detach, From: []State{Running, Paused}, To: Gone},
	// A commit works on the disk of a stopped VM, which nothing may start
	// or remove meanwhile: Committing allows no other op.
	{Op: Commit, From: []State{Stopped}, Via: Committing, To: Stopped},
	// A memory commit pauses a running VM for its capture, which moves
	// its disk onto an overlay: nothing else may run meanwhile either.
	{Op: Capture, From: []State{Running}, Via: Committing, To: Running},
	// Warm pools: a pool VM is created and boots as any VM, joins the
	// pool once its agent answers, and leaves it as a node (or deleted).
	{Op: Pool, From: []State{Running}, To: Pooled},
	{Op: Take, From: []State{Pooled}, To: Running},
	{Op: Exec, From: guestStates},
	{Op: Shell, From: guestStates},
	{Op: Forward, From: guestStates},
	{Op: Health, From: guestStates},
	{Op: Stats, From: guestStates},
	{Op: Guest, From: guestStates},
	// A starting VM gets its secrets once its agent is up; a paused one
	// at the next change.
	{Op: SyncSecrets, From: []State{Running}},
}

// guestStates are those in which the guest's agent may be asked: a
// creating VM's answers 503 until its agent is up.
var guestStates = []State{Creating, Running}

// rules indexes Rules by op.
var rules = func() map[Op]Rule {
	idx := map[Op]Rule{}
	for _, r := range Rules {
		if _, dup := idx[r.Op]; dup {
			panic("vmstate: two rules for " + r.Op)
		}
		idx[r.Op] = r
	}
	return idx
}()

// RuleOf returns the rule of op.
func RuleOf(op Op) (Rule, bool) {
	r, ok := rules[op]
	return r, ok
}

// Allowed reports whether op may run in state s.
func Allowed(op Op, s State) bool {
	r, ok := rules[op]
	if !ok {
		return false
	}
	for _, f := range r.From {
		if f == s {
			return true
		}
	}
	return false
}

// Check returns the rule of op when it may run on vm in state s, and a
// *Refused error otherwise.
func Check(vm string, op Op, s State) (Rule, error) {
	if !Allowed(op, s) {
		return Rule{}, &Refused{VM: vm, Op: op, State: s}
	}
	return rules[op], nil
}

// Refused is an operation the table does not allow in the state the VM is
// in. It is of class api.ErrConflict.
type Refused struct {
	VM    string
	Op    Op
	State State
}

func (e *Refused) Error() string {
	return fmt.Sprintf("%s vm %q: it is %s: %v", e.Op.Verb(), e.VM, e.State.Label(), api.ErrConflict)
}

// Unwrap makes errors.Is(err, api.ErrConflict) hold.
func (e *Refused) Unwrap() error { return api.ErrConflict }
