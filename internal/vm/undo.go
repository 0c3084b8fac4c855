package vm

import (
	"context"
	"errors"
)

// undoStack collects the inverse of every step a create has taken, so that
// a failure at any point unwinds exactly what was done, in reverse.
type undoStack struct {
	fns []func(ctx context.Context) error
}

// push registers the undo of a step that has just succeeded.
func (u *undoStack) push(fn func(ctx context.Context) error) { u.fns = append(u.fns, fn) }

// run executes the undos in reverse order, joining their errors. It runs
// under a context that is not cancelled with the request's.
func (u *undoStack) run(ctx context.Context) error {
	ctx = context.WithoutCancel(ctx)
	var errs []error
	for i := len(u.fns) - 1; i >= 0; i-- {
		if err := u.fns[i](ctx); err != nil {
			errs = append(errs, err)
		}
	}
	u.fns = nil
	return errors.Join(errs...)
}

// release forgets the undos: the create succeeded and owns its resources.
func (u *undoStack) release() { u.fns = nil }
